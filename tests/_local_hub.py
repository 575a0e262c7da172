"""A Hugging Face Hub served from this machine, for round trips with no network.

huggingface_hub has no offline stand-in for a repository you can push to, so this
serves the few endpoints its client calls (create a repository, pre-upload, commit,
repository info, resolve a file) over HTTP on 127.0.0.1. The client code under test
is huggingface_hub's own, unchanged: ``HfApi(endpoint=hub.url)`` for uploads and
``HF_ENDPOINT=hub.url`` for downloads, through its real cache. Anything else the
client asks for is answered 404 and recorded in :attr:`LocalHub.unknown`, so a
test can show that nothing went unanswered; :attr:`LocalHub.tokens` records the
token each request carried, :attr:`LocalHub.cards` the model cards the client asked
to validate.

Every upload is answered "regular" (the file's bytes in the commit): large-file
storage (the Hub's Xet or LFS, where the real Hub puts ``model.safetensors``) is not
served, so huggingface_hub's own large-file path is not exercised here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlparse


class LocalHub:
    """Model repositories in memory: ``repos[repo_id][commit] = {path: bytes}``."""

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, dict[str, bytes]]] = {}
        self.heads: dict[tuple[str, str], str] = {}  # (repo_id, branch) -> commit
        self.tokens: list[str | None] = []  # the bearer token of each request
        self.unknown: list[str] = []
        self.requests: list[str] = []
        self.cards: list[str] = []  # README.md texts the client asked to validate
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                hub._serve(self, "GET")

            def do_HEAD(self) -> None:
                hub._serve(self, "HEAD")

            def do_POST(self) -> None:
                hub._serve(self, "POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LocalHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------------ routes
    def _serve(self, h: BaseHTTPRequestHandler, method: str) -> None:
        path = unquote(urlparse(h.path).path)
        self.requests.append(f"{method} {path}")
        auth = h.headers.get("Authorization") or ""
        self.tokens.append(auth[len("Bearer "):] if auth.startswith("Bearer ") else None)
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0)) if method == "POST" else b""
        parts = path.strip("/").split("/")
        try:
            if method == "POST" and path == "/api/repos/create":
                info = json.loads(body)
                repo_id = f"{info['organization']}/{info['name']}" if info.get(
                    "organization") else info["name"]
                self.repos.setdefault(repo_id, {})
                return self._json(h, {"url": f"{self.url}/{repo_id}", "name": repo_id})
            if method == "POST" and path == "/api/validate-yaml":
                return self._validate_yaml(h, json.loads(body)["content"])
            if method == "POST" and parts[:2] == ["api", "models"] and parts[4] == "preupload":
                files = json.loads(body)["files"]
                return self._json(h, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                 "shouldIgnore": False} for f in files]})
            if method == "POST" and parts[:2] == ["api", "models"] and parts[4] == "commit":
                return self._commit(h, f"{parts[2]}/{parts[3]}", parts[5], body)
            if method == "POST" and parts[:2] == ["api", "models"] and parts[4] == "branch":
                repo_id = f"{parts[2]}/{parts[3]}"
                if (repo_id, parts[5]) not in self.heads:
                    self.heads[repo_id, parts[5]] = self.heads.get((repo_id, "main"), "")
                return self._json(h, {})
            if method == "GET" and parts[:2] == ["api", "models"] and parts[4:5] == ["tree"]:
                repo_id = f"{parts[2]}/{parts[3]}"
                files = self.repos[repo_id][self._commit_of(repo_id, parts[5])]
                return self._json(h, [{"type": "file", "path": p, "size": len(data),
                                       "oid": hashlib.sha1(data).hexdigest()}
                                      for p, data in sorted(files.items())])
            if method == "GET" and parts[:2] == ["api", "models"] and len(parts) >= 4:
                repo_id = f"{parts[2]}/{parts[3]}"
                revision = parts[5] if len(parts) > 5 and parts[4] == "revision" else "main"
                commit = self._commit_of(repo_id, revision)
                files = self.repos[repo_id][commit]
                return self._json(h, {"id": repo_id, "modelId": repo_id, "sha": commit,
                                      "siblings": [{"rfilename": p} for p in sorted(files)],
                                      "private": False, "disabled": False, "gated": False})
            if len(parts) >= 5 and parts[2] == "resolve":
                repo_id, revision, file = f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:])
                commit = self._commit_of(repo_id, revision)
                data = self.repos[repo_id][commit][file]
                h.send_response(200)
                h.send_header("Content-Length", str(len(data)))
                h.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
                h.send_header("X-Repo-Commit", commit)
                h.end_headers()
                if method == "GET":
                    h.wfile.write(data)
                return None
        except (KeyError, IndexError, ValueError):
            pass
        self.unknown.append(f"{method} {path}")
        h.send_response(404)
        h.send_header("Content-Type", "application/json")
        h.send_header("X-Error-Code", "EntryNotFound" if "resolve" in parts else "RepoNotFound")
        data = json.dumps({"error": "not found"}).encode()
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if method != "HEAD":
            h.wfile.write(data)
        return None

    def _commit_of(self, repo_id: str, revision: str) -> str:
        if revision in self.repos[repo_id]:
            return revision
        return self.heads[repo_id, revision]  # a branch; KeyError (404) if there is none

    def head(self, repo_id: str, branch: str = "main") -> dict[str, bytes]:
        """The files at the tip of ``branch``."""
        return self.repos[repo_id][self.heads[repo_id, branch]]

    def _commit(self, h: BaseHTTPRequestHandler, repo_id: str, branch: str, body: bytes) -> None:
        if branch != "main" and (repo_id, branch) not in self.heads:
            raise KeyError(branch)  # the Hub commits only to a branch that exists
        files = dict(self.repos[repo_id].get(self.heads.get((repo_id, branch), ""), {}))
        for line in body.decode().splitlines():
            item = json.loads(line)
            if item["key"] == "file":
                value = item["value"]
                files[value["path"]] = base64.b64decode(value["content"])
        commit = hashlib.sha1(json.dumps(sorted((k, hashlib.sha1(v).hexdigest())
                                                for k, v in files.items())).encode()).hexdigest()
        self.repos[repo_id][commit] = files
        self.heads[repo_id, branch] = commit
        self._json(h, {"commitUrl": f"{self.url}/{repo_id}/commit/{commit}",
                       "commitOid": commit, "pullRequestUrl": None})

    def _validate_yaml(self, h: BaseHTTPRequestHandler, content: str) -> None:
        """The card's front matter must be a YAML mapping (the Hub checks far more)."""
        import yaml

        front = content.split("---", 2)[1] if content.startswith("---") else ""
        try:
            ok = isinstance(yaml.safe_load(front), dict)
        except yaml.YAMLError:
            ok = False
        self.cards.append(content)
        if ok:
            return self._json(h, {"warnings": []})
        return self._json(h, {"errors": [{"message": "no YAML mapping"}]}, status=400)

    @staticmethod
    def _json(h: BaseHTTPRequestHandler, payload: Any, status: int = 200) -> None:
        data = json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
