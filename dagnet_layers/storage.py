"""Files that survive a kill, a full disk and a second process: atomic writes, checksums, locks.

The building blocks of the engine's checkpoints and of the EMOTIC cache:

- :func:`write_bytes_atomic`: write a file under a temporary name, ``fsync``
  it, rename it into place and ``fsync`` the folder, so a reader sees the old
  file or the new one, never half of one; any OS error (``ENOSPC`` on a full
  disk, ``EDQUOT``, ``EIO``...) removes the temporary file and is raised as a
  :class:`StorageError` that names the path and the cause in one line;
- :func:`sha256_file` / :func:`verify_files`: SHA-256 checksums written when
  a file is made and checked when it is read, so a flipped byte is an error
  that names the file, not a silently different model;
- :class:`FolderLock`: an exclusive ``flock`` on ``<folder>/.lock`` for as
  long as a process works in the folder. A second process fails at once with
  :class:`FolderLockedError` naming the folder and the holder's PID. The
  kernel drops the lock when its holder dies, however it dies, so a lock left
  by a killed process is simply taken by the next one;
- :class:`ReadersLock`: a ``flock`` that readers of a set of files share and
  a writer takes alone, so that files cannot be rewritten under a process
  reading them (a training run reading a decoded-image cache).

This module imports nothing else of the package but :mod:`dagnet_layers.errors`
(whose :class:`StorageError`, :class:`IntegrityError` and
:class:`FolderLockedError` it re-exports).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import stat
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from dagnet_layers.errors import (
    CorruptFileError,
    FolderLockedError,
    IntegrityError,
    MissingFileError,
    StorageError,
    UnsafePathError,
)

__all__ = [
    "LOCK_NAME",
    "FolderLock",
    "FolderLockedError",
    "IntegrityError",
    "ReadersLock",
    "StorageError",
    "check_record",
    "file_in_the_way",
    "fsync_dir",
    "open_in_root",
    "read_json_object",
    "replace_durably",
    "sha256_file",
    "verify_files",
    "write_bytes_atomic",
]

#: Name of the lock file a :class:`FolderLock` holds in its folder.
LOCK_NAME = ".lock"

_CHUNK = 1 << 22  # 4 MiB reads when hashing


def _describe(err: OSError) -> str:
    return err.strerror or str(err)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """``fsync`` a folder so that renames and new entries in it reach the disk.

    A no-op where the platform or file system cannot (Windows, some network
    file systems).

    Args:
        path: The folder.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes | bytearray | memoryview) -> str:
    """Write ``data`` to ``path`` atomically and durably; return its SHA-256.

    The bytes go to ``.<name>.tmp-<pid>`` in the same folder, are flushed and
    ``fsync``-ed, and the file is renamed over ``path`` (atomic on POSIX and
    Windows); the folder is then ``fsync``-ed. A kill leaves either the old
    file or the new one (and at worst a temporary file, which the next write
    replaces).

    Args:
        path: Destination file; its folder must exist.
        data: The content.

    Returns:
        The hex SHA-256 of ``data``.

    Raises:
        StorageError: the write failed (full disk, quota, I/O error, permission);
            the message names ``path`` and the cause, the temporary file is gone,
            and ``path`` is as it was.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     digest = write_bytes_atomic(Path(d) / "a.txt", b"abc")
        ...     (Path(d) / "a.txt").read_bytes(), digest[:8]
        (b'abc', 'ba7816bf')
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise StorageError(err.errno, f"cannot write {path}: {_describe(err)}") from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return hashlib.sha256(data).hexdigest()


def replace_durably(tmp: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """Put a finished temporary file in place: ``fsync`` it, rename it over ``path`` and
    ``fsync`` the folder (the last steps of :func:`write_bytes_atomic`, for files written
    as a stream: prediction tables, videos). OS errors propagate."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(Path(path).parent)


def read_json_object(
    path: str | os.PathLike[str], what: str = "JSON file", *, max_bytes: int | None = None
) -> dict[str, Any]:
    """Read a JSON object from ``path``, or raise a library error naming the file.

    Args:
        path: The file.
        what: What the file is, for the messages (e.g. ``"EMOTIC cache manifest"``).
        max_bytes: Refuse a larger file before reading it (settings files are a few KB;
            a huge one is not what we wrote).

    Returns:
        The parsed object.

    Raises:
        MissingFileError: The file does not exist.
        CorruptFileError: It is not a regular file, larger than ``max_bytes``, not
            UTF-8, not JSON, nested too deeply to parse, or not an object.

    Example:
        >>> import tempfile, os
        >>> with tempfile.TemporaryDirectory() as d:
        ...     p = os.path.join(d, "a.json")
        ...     _ = open(p, "w").write('{"x": 1}')
        ...     read_json_object(p)
        {'x': 1}
    """
    path = Path(path)
    if not path.exists():
        raise MissingFileError(path, f"{what} not found")
    if not path.is_file():
        raise CorruptFileError(path, f"{what} exists but is not a regular file")
    size = path.stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise CorruptFileError(path, f"{what} is {size:,} bytes, more than the {max_bytes:,} "
                               "such a file can need; refusing to read it")
    try:
        payload = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise CorruptFileError(path, f"{what} is not UTF-8 text") from exc
    except json.JSONDecodeError as exc:
        raise CorruptFileError(path, f"{what} is not valid JSON ({exc})") from exc
    except RecursionError as exc:
        raise CorruptFileError(path, f"{what} is nested too deeply to be what we write") from exc
    if not isinstance(payload, dict):
        raise CorruptFileError(path, f"{what} must hold a JSON object, got "
                               f"{type(payload).__name__}")
    return payload


def file_in_the_way(path: str | os.PathLike[str], folder: bool) -> Path | None:
    """The existing file that stands where ``path``'s folders (and ``path`` itself, when
    it is to be a ``folder``) would be made, or ``None``: the nearest existing path
    among them decides.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     (Path(d) / "notes").write_text("")
        ...     file_in_the_way(Path(d) / "notes" / "run", folder=True) == Path(d) / "notes"
        0
        True
    """
    path = Path(path)
    for candidate in ([path] if folder else []) + list(path.parents):
        if candidate.exists():
            return None if candidate.is_dir() else candidate
    return None


def open_in_root(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> BinaryIO:
    """Open a file for reading, then check that what was opened lies inside ``root``.

    Checking a path and then opening it leaves a window in which a symbolic link can
    be swapped in, and the open follows it out of the data root. Here the check is
    made on the opened descriptor: on Linux its real path (``/proc/self/fd``), on
    macOS ``F_GETPATH``; elsewhere the resolved path's device and inode must be the
    opened file's. Symbolic links that stay inside ``root`` are followed as usual.
    Only a regular file is accepted, opened without blocking (a FIFO cannot stall
    the reader).

    Args:
        path: The file, already joined under ``root`` (see
            :func:`~dagnet_layers.emotic.data.resolve_in_root`).
        root: The folder the file must lie in, symbolic links resolved.

    Returns:
        The open binary file (close it, or use it in a ``with``).

    Raises:
        MissingFileError: ``path`` does not exist or is not a regular file.
        UnsafePathError: what was opened lies outside ``root`` (names ``path``).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _ = Path(d, "a.jpg").write_bytes(b"x")
        ...     with open_in_root(Path(d, "a.jpg"), d) as f:
        ...         f.read()
        b'x'
    """
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_BINARY", 0))
    except OSError as err:
        raise MissingFileError(path, f"cannot be opened ({_describe(err)})") from err
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode):
            raise MissingFileError(path, "is not a regular file")
        real = _opened_path(fd)
        if real is None:  # no way to ask the descriptor: the resolved path must be it
            real = os.path.realpath(path)
            now = os.stat(real)
            if (now.st_dev, now.st_ino) != (opened.st_dev, opened.st_ino):
                raise UnsafePathError(f"{path} changed while it was opened")
        base = _real_folder(root)
        if not _is_within(real, base):
            raise UnsafePathError(
                f"{path} leads outside the data root {root} through a symbolic link (it "
                "was checked when the annotations were read and changed since)"
            )
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _real_folder(folder: str | os.PathLike[str]) -> str:
    """``folder``'s real path as the system spells it (on macOS the stored case of a
    case-insensitive disk, as ``F_GETPATH`` gives it for the opened file), else its
    ``realpath``."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return os.path.realpath(folder)
    try:
        return _opened_path(fd) or os.path.realpath(folder)
    finally:
        os.close(fd)


def _is_within(path: str, folder: str) -> bool:
    try:
        return os.path.commonpath([folder, path]) == folder
    except ValueError:  # Windows: on another drive
        return False


def _opened_path(fd: int) -> str | None:
    """The real path of an open descriptor, where the platform can say."""
    if sys.platform.startswith("linux"):
        try:
            return os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return None
    if sys.platform == "darwin":  # pragma: no cover - macOS
        import fcntl

        raw = fcntl.fcntl(fd, fcntl.F_GETPATH, b"\0" * 1024)
        return os.fsdecode(raw.rstrip(b"\0"))
    return None  # pragma: no cover - other platforms


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, read in 4 MiB chunks (constant memory).

    Args:
        path: The file.

    Returns:
        Its hex digest.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _ = write_bytes_atomic(Path(d) / "a", b"abc")
        ...     sha256_file(Path(d) / "a")[:8]
        'ba7816bf'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_files(folder: str | os.PathLike[str], files: Mapping[str, Mapping[str, Any]]) -> None:
    """Check files of ``folder`` against recorded sizes and SHA-256 checksums.

    Args:
        folder: Where the files are.
        files: File name -> ``{"size": bytes, "sha256": hex}`` as recorded at write time.

    Raises:
        FileNotFoundError: a listed file is missing (names it).
        IntegrityError: a file's size or checksum differs (names it).
    """
    folder = Path(folder)
    for name, expected in files.items():
        path = folder / name
        try:
            if not path.is_file():
                raise MissingFileError(path, "missing (listed in the folder's checksums)")
            check_record(path, path.stat().st_size, lambda p=path: sha256_file(p), expected)
        except MissingFileError:
            raise
        except FileNotFoundError as err:  # deleted while it was checked (a folder collected)
            raise MissingFileError(path, "vanished while it was checked") from err


def check_record(path: str | os.PathLike[str], size: int, digest: Callable[[], str],
                 expected: Mapping[str, Any]) -> None:  # fmt: skip
    """Compare a file's ``size`` and (lazily) its SHA-256 ``digest()`` with ``expected``.

    The one place that words a mismatch, for files checked on disk
    (:func:`verify_files`) and bytes checked in memory (a model's weights).

    Raises:
        IntegrityError: the size or the checksum differs (names ``path``).
    """
    if "size" in expected and size != int(expected["size"]):
        raise IntegrityError(
            path, f"has {size} bytes, {expected['size']} were written: the file is "
            "truncated or was replaced"
        )
    if "sha256" in expected and digest() != expected["sha256"]:
        raise IntegrityError(
            path, "does not match the SHA-256 checksum written with it: the file (or "
            "the recorded checksum) is corrupted or was modified"
        )


def _write_holder(fd: int, purpose: str) -> None:
    """Say in the lock file who holds it alone, for a refused process to name."""
    info = {"pid": os.getpid(), "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"), "purpose": purpose}
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)  # (no pwrite on Windows)
    os.write(fd, (json.dumps(info) + "\n").encode())


def _locking() -> Any:
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import msvcrt

        return msvcrt
    import fcntl

    return fcntl


class FolderLock:
    """An exclusive, non-blocking lock on a folder, held while a process works in it.

    Uses ``flock`` on ``<folder>/.lock`` (``msvcrt.locking`` on Windows). The
    holder's PID, host, start time and purpose are written into the file, so
    that a process refused the lock can say who holds it. The operating system
    releases the lock when the holding process exits or is killed; a lock
    file left behind is not a stale lock, just a file the next holder reuses.
    Network file systems may not honour ``flock``: keep run and cache folders
    on local disks, or accept that two machines are not kept apart.

    Args:
        folder: The folder (created if missing).
        purpose: Said to a second process, e.g. ``"training"``.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d, FolderLock(d, purpose="demo"):
        ...     try:
        ...         FolderLock(d).acquire()
        ...     except FolderLockedError as err:
        ...         print("refused:", "in use by process" in str(err))
        refused: True
    """

    def __init__(self, folder: str | os.PathLike[str], purpose: str = "") -> None:
        self.folder = Path(folder)
        self.purpose = purpose
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def acquire(self) -> FolderLock:
        """Take the lock, or raise :class:`FolderLockedError` at once.

        Returns:
            ``self``.

        Raises:
            FolderLockedError: another process (or another ``FolderLock`` of
                this process) holds it.
            StorageError: the lock file cannot be created (names it).
        """
        if self._fd is not None:
            return self
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            blocking = file_in_the_way(self.folder, folder=True)
            why = _describe(err) if blocking is None else f"{blocking} is a file, not a folder"
            raise StorageError(
                err.errno, f"cannot create the lock file {self.folder / LOCK_NAME}: {why}"
            ) from err
        lib = _locking()
        try:
            if sys.platform == "win32":  # pragma: no cover
                lib.locking(fd, lib.LK_NBLCK, 1)
            else:
                lib.flock(fd, lib.LOCK_EX | lib.LOCK_NB)
        except OSError as err:
            holder = self._read_holder(fd)
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES, errno.EDEADLK):
                raise FolderLockedError(self.folder, holder) from None
            raise StorageError(
                err.errno, f"cannot lock {self.folder / LOCK_NAME}: {_describe(err)}"
            ) from err
        _write_holder(fd, self.purpose)
        self._fd = fd
        return self

    @staticmethod
    def _read_holder(fd: int) -> dict[str, Any]:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            data = json.loads(os.read(fd, 4096).decode() or "{}")
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def release(self) -> None:
        """Give the lock back (the file stays, for the next holder)."""
        if self._fd is None:
            return
        lib = _locking()
        try:
            if sys.platform == "win32":  # pragma: no cover
                lib.locking(self._fd, lib.LK_UNLCK, 1)
            else:
                lib.flock(self._fd, lib.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"FolderLock({str(self.folder)!r}, held={self.held})"


class ReadersLock:
    """A lock that readers of some files share and a writer of them holds alone.

    Readers take it shared for as long as they may read; a writer that would change
    the files takes it exclusive. Neither waits: a writer is refused while anyone
    reads, and a reader while someone writes, with :class:`FolderLockedError` naming
    the other side (the writer's PID, host and purpose, which it writes into the lock
    file; the readers' PIDs where ``/proc/locks`` lists them). The lock is released
    by :meth:`release`, when the object is collected, or by the kernel when its
    process ends, however it ends.

    Uses ``flock`` on ``path``. Not held on Windows (``msvcrt`` has no shared lock).
    A reader in a folder it may not write opens the lock file read-only; where that
    file does not exist yet (a cache built by an older version, in a folder this user
    cannot write), the reader holds nothing, and :attr:`held` says so. A writer needs
    the file open for writing and fails with :class:`StorageError` otherwise. Network
    file systems may not honour ``flock`` (see :class:`FolderLock`). A process that
    forks keeps the lock in its children; a copy of the object made by pickling holds
    nothing.

    Args:
        path: The lock file (created if missing).
        what: What the files are, said to a refused process (``"reading the train
            split of cache/"``, ``"writing ..."``).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     reader = ReadersLock(f"{d}/.lock", "the data").acquire(shared=True)
        ...     other = ReadersLock(f"{d}/.lock", "the data").acquire(shared=True)
        ...     try:
        ...         ReadersLock(f"{d}/.lock", "the data").acquire(shared=False)
        ...     except FolderLockedError as err:
        ...         print("writer refused:", "reading the data" in str(err))
        writer refused: True
    """

    def __init__(self, path: str | os.PathLike[str], what: str = "the files") -> None:
        self.path = Path(path)
        self.what = what
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def acquire(self, shared: bool = True) -> ReadersLock:
        """Take the lock shared (a reader) or exclusive (a writer), without waiting.

        Returns:
            ``self``, usable as a context manager that releases it.

        Raises:
            FolderLockedError: the other side holds it (names who, where known).
            StorageError: the lock file exists but cannot be opened or locked.
        """
        if self._fd is not None or sys.platform == "win32":
            return self
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            if not shared or err.errno not in (errno.EACCES, errno.EROFS, errno.EPERM):
                raise StorageError(err.errno, f"cannot open the lock file {self.path}: "
                                   f"{_describe(err)}") from err
            try:  # a reader in a read-only folder: lock a file that is there, or nothing
                fd = os.open(self.path, os.O_RDONLY)
            except OSError:
                return self
        lib = _locking()
        try:
            lib.flock(fd, (lib.LOCK_SH if shared else lib.LOCK_EX) | lib.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                holder = (FolderLock._read_holder(fd) if shared
                          else self._readers(fd))  # fmt: skip
                os.close(fd)
                raise FolderLockedError(self.path.parent, holder) from None
            os.close(fd)
            raise StorageError(err.errno, f"cannot lock {self.path}: {_describe(err)}") from err
        if not shared:
            try:
                _write_holder(fd, f"writing {self.what}")
            except OSError:
                pass  # who holds it is a courtesy to the refused; the lock is what counts
        self._fd = fd
        return self

    def _readers(self, fd: int) -> dict[str, Any]:
        """Who holds the lock shared: the PIDs ``/proc/locks`` lists for its inode."""
        pids = []
        try:
            st = os.fstat(fd)  # /proc/locks names a file as hex major:minor:inode
            key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
            with open("/proc/locks", encoding="ascii") as f:
                for line in f:
                    fields = line.split()
                    if "->" in fields or len(fields) < 6 or fields[1] != "FLOCK":
                        continue
                    if fields[5] == key:
                        pids.append(fields[4])
        except (OSError, ValueError, AttributeError):
            pass
        pids = sorted(set(pids), key=int)
        own = str(os.getpid())
        shown = ", ".join(f"{p} (this process)" if p == own else p for p in pids)
        holder: dict[str, Any] = {"purpose": f"reading {self.what}"}
        if shown:
            holder["pid"] = shown
        return holder

    def release(self) -> None:
        """Give the lock back (the file stays, for the next holder)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the last descriptor releases a flock

    def __enter__(self) -> ReadersLock:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:  # interpreter shutdown: the kernel releases it with the process
            pass

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fd": None}

    def __repr__(self) -> str:
        return f"ReadersLock({str(self.path)!r}, held={self.held})"
