"""A saved model's files: find them (a folder or the Hub), read the config, load the weights.

A folder written by :meth:`~dagnet_layers.models.DAGNet.save_pretrained` holds
``config.json`` (the :class:`~dagnet_layers.models.DAGNetConfig`, the package
version, the weights' size and SHA-256) and ``model.safetensors``. Every loader
of the package (``DAGNet.from_pretrained``, ``create_model(checkpoint_path=...)``,
the training engine's checkpoints) reads them through this module, strictly.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dagnet_layers.errors import (
    ConfigError,
    CorruptFileError,
    MissingFileError,
)
from dagnet_layers.models.config import DAGNetConfig
from dagnet_layers.storage import (
    IntegrityError,
    check_record,
    read_json_object,
)

__all__ = ["load_pretrained_weights", "read_pretrained_config", "resolve_pretrained_source",
           "was_moved"]

#: File name of a saved model's configuration (with its weights' checksum).
CONFIG_NAME = "config.json"
#: File name of a saved model's weights.
WEIGHTS_NAME = "model.safetensors"

#: The top-level fields of a saved ``config.json``: ours, then timm's.
_META_FIELDS = frozenset({"format", "version", "config", "weights", "architecture",
                          "num_classes", "num_features", "model_args", "pretrained_cfg",
                          "label_names"})  # fmt: skip
#: Largest ``config.json`` read (ours are a few KB).
MAX_CONFIG_BYTES = 1 << 20

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_pretrained_source(
    source: str | os.PathLike[str],
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    force_download: bool = False,
) -> Path:
    """The local folder holding a saved model: ``source`` itself, or its Hub snapshot.

    Args:
        source: A folder; or ``"org/name"``, ``"hf-hub:org/name"`` or
            ``"hf-hub:org/name@revision"`` on the Hugging Face Hub.
        revision: Hub revision (overrides an ``@revision`` suffix).
        cache_dir: Hub cache folder.
        token: Hub token (``None``: the logged-in one; ``False``: none).
        local_files_only: The Hub cache only, never the network.
        force_download: Download again even when cached.

    Returns:
        The folder (for the Hub: the snapshot in the local cache).

    Raises:
        MissingFileError: The Hub could not provide the files (offline and not
            cached, unknown repository, no access).
    """
    text = os.fspath(source)
    hub = text.startswith("hf-hub:")
    if hub:
        text = text[len("hf-hub:"):]
    elif Path(text).expanduser().exists() or not _REPO_ID.match(text):
        # Links resolved once, here: a run's ``last``/``best`` link may be re-pointed by
        # its trainer while we read, and every file must come from one checkpoint.
        return Path(text).expanduser().resolve()
    if "@" in text:
        text, suffix = text.split("@", 1)
        revision = revision or suffix
    snapshot_download = _hub_function("snapshot_download")

    try:
        folder = snapshot_download(
            text, revision=revision, repo_type="model",
            cache_dir=None if cache_dir is None else os.fspath(cache_dir),
            token=token, local_files_only=local_files_only, force_download=force_download,
            allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, "inference.json", "README.md"],
        )  # fmt: skip
    except Exception as err:
        raise MissingFileError(
            f"hf-hub:{text}", "no local folder of that name, and the Hugging Face Hub could not "
            f"provide it ({type(err).__name__}: {' '.join(str(err).split())[:300]})"
        ) from err
    return Path(folder)


def _hub_function(name: str) -> Any:
    """A function of huggingface_hub (a dependency of timm and of ours), or a clear error."""
    try:
        import huggingface_hub
    except ImportError as err:  # pragma: no cover - installed with timm
        raise ImportError("loading from the Hugging Face Hub needs huggingface_hub: "
                          "pip install 'huggingface_hub>=0.23'") from err
    return getattr(huggingface_hub, name)


def was_moved(source: str | os.PathLike[str], resolved: Path) -> bool:
    """Whether ``source`` (a local link such as a run's ``last``) now points elsewhere
    than ``resolved``: a reader that failed half-way should resolve it again."""
    path = Path(os.fspath(source)).expanduser()
    try:
        return path.is_symlink() and path.resolve() != resolved
    except OSError:
        return False


def read_pretrained_config(directory: str | os.PathLike[str]) -> DAGNetConfig:
    """The :class:`DAGNetConfig` of a folder written by :meth:`DAGNet.save_pretrained`.

    Raises:
        MissingFileError: No ``config.json``.
        CorruptFileError: It is not a valid dagnet-layers config (names the field).
    """
    config_file = Path(directory) / CONFIG_NAME
    return _config_from_meta(_read_meta(config_file), config_file)


def _config_from_meta(meta: dict[str, Any], config_file: Path) -> DAGNetConfig:
    config = dict(meta["config"])
    # Written by a pre-release build, before ABN's attention block existed: the light
    # block it had.
    config.setdefault("gsam_block", "light")
    try:
        checked = DAGNetConfig.from_dict(config)
    except (ConfigError, TypeError) as err:
        raise CorruptFileError(config_file, f"invalid model config: {err}") from err
    for field in ("body_backbone", "context_backbone"):
        _check_backbone_name(config_file, field, getattr(checked, field))
    if "model_args" in meta and meta["model_args"] != meta["config"]:
        raise CorruptFileError(config_file, "its 'model_args' (read by timm) differ from its "
                               "'config' (read by dagnet-layers); one of them was edited")
    _check_timm_fields(meta, checked, config_file)
    return checked


def _check_timm_fields(meta: dict[str, Any], config: DAGNetConfig, config_file: Path) -> None:
    """The fields written for timm and the Hub, each of its type and consistent."""

    def bad(field: str, want: str) -> CorruptFileError:
        return CorruptFileError(config_file, f"{field} must be {want}, got "
                                f"{str(meta[field])[:80]!r}")

    if "version" in meta and not isinstance(meta["version"], str):
        raise bad("version", "a version string")
    if "architecture" in meta and meta["architecture"] != "dagnet":
        raise bad("architecture", "'dagnet' (the variant timm builds a saved model with)")
    if "num_classes" in meta and meta["num_classes"] != config.num_classes:
        raise bad("num_classes", f"the config's {config.num_classes}")
    if "num_features" in meta and not (isinstance(meta["num_features"], int)
                                       and not isinstance(meta["num_features"], bool)):
        raise bad("num_features", "an int")
    if "pretrained_cfg" in meta and not isinstance(meta["pretrained_cfg"], dict):
        raise bad("pretrained_cfg", "an object")
    labels = meta.get("label_names")
    if labels is not None and not (isinstance(labels, list) and len(labels) == config.num_classes
                                   and all(isinstance(x, str) for x in labels)):
        raise bad("label_names", f"a list of {config.num_classes} strings")


def _check_backbone_name(config_file: Path, field: str, name: str) -> None:
    """A saved model may name only timm's registered models: a ``hf-hub:`` or
    ``local-dir:`` name in a file would make loading a local folder reach the network or
    read outside it, and a misspelt one would fail inside timm."""
    import timm

    if timm.is_model(name):
        return
    if ":" in name or "/" in name or "\\" in name:
        raise CorruptFileError(
            config_file, f"{field} {name[:80]!r} is not a timm model name; a saved model may "
            "name only those (a hub or folder source in a file would be fetched or read "
            "when it loads). To load such a model, build it yourself (build_dagnet(...)) "
            "and fill it with load_pretrained_weights(model, folder)")
    raise CorruptFileError(config_file, f"{field} {name[:80]!r} is not a model timm knows "
                           f"(timm {timm.__version__}): written by another timm, or edited")


def load_pretrained_weights(
    model: nn.Module, source: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> nn.Module:
    """Load a saved ``model.safetensors`` (a folder or the file) into ``model``, strictly.

    The size and SHA-256 recorded in the folder's ``config.json`` are checked when
    present.

    Args:
        model: The model to fill (its architecture must match the weights).
        source: A folder written by :meth:`DAGNet.save_pretrained`, or a
            ``.safetensors`` file.
        map_location: Device the tensors are read to.

    Returns:
        ``model``.

    Raises:
        MissingFileError: No weights file.
        CorruptFileError: Not a safetensors file, or keys or shapes that do not fit.
        IntegrityError: The weights differ from the checksum recorded with them.
    """

    path = Path(source).expanduser().resolve()  # a ``last`` link: one folder for both files
    if not path.is_dir():
        return _load_weights(model, path, None, map_location)
    meta = _read_meta(path / CONFIG_NAME) if (path / CONFIG_NAME).is_file() else None
    return _load_weights(model, path / WEIGHTS_NAME, meta, map_location)


def _load_weights(
    model: nn.Module, weights: Path, meta: dict[str, Any] | None,
    map_location: str | torch.device,
) -> nn.Module:  # fmt: skip
    """Strictly load ``weights``, first checked against ``meta``'s recorded checksum if any."""
    return _fill(model, read_weights(weights, meta, map_location), weights)


def read_weights(
    weights: Path, meta: dict[str, Any] | None, map_location: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """The tensors of ``weights``, read once into memory and checked there against the size
    and SHA-256 ``meta`` records (so what is checked is what is loaded, even if the file
    is replaced meanwhile)."""
    import hashlib

    from safetensors import SafetensorError
    from safetensors.torch import load

    if not weights.is_file():
        raise MissingFileError(weights, "not found (written by save_pretrained)")
    try:
        data = weights.read_bytes()
    except FileNotFoundError as err:  # removed between the check and the read
        raise MissingFileError(weights, "not found (written by save_pretrained)") from err
    recorded = (meta or {}).get("weights")
    if isinstance(recorded, dict):
        digest = hashlib.sha256(data).hexdigest()
        try:
            check_record(weights, len(data), lambda: digest, recorded)
        except IntegrityError as err:
            if len(data) == int(recorded.get("size", len(data))) and \
                    _manifest_digest(weights) == digest:  # the training manifest vouches
                raise IntegrityError(
                    weights.parent / CONFIG_NAME, f"its checksum of {weights.name} differs "
                    "from the file, which matches the checkpoint's MANIFEST.json: config.json "
                    "was edited or damaged (the weights are intact)") from err
            raise
    try:
        state = load(data)
    except (SafetensorError, OSError, ValueError) as err:
        raise CorruptFileError(weights, f"not a valid safetensors file ({err})") from err
    if str(map_location) != "cpu":
        state = {k: v.to(map_location) for k, v in state.items()}
    return state


def _manifest_digest(weights: Path) -> str | None:
    """The SHA-256 a training checkpoint's ``MANIFEST.json`` records for ``weights``."""
    import json

    try:
        manifest = json.loads((weights.parent / "MANIFEST.json").read_text(encoding="utf-8"))
        digest = manifest["files"][weights.name]["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return digest if isinstance(digest, str) else None


def _fill(model: nn.Module, state: dict[str, torch.Tensor], weights: Path) -> nn.Module:
    """Load ``state`` into ``model`` strictly; a mismatch names ``weights``."""
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shapes that differ from the config's
        raise CorruptFileError(
            weights, f"does not match its config: {' '.join(str(err).split())}"
        ) from err
    if missing or unexpected:
        raise CorruptFileError(
            weights, f"does not match its config: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    return model


def _read_meta(config_file: Path) -> dict[str, Any]:
    if not config_file.exists():
        raise MissingFileError(config_file, "not found (written by save_pretrained)")
    meta = read_json_object(config_file, "model config", max_bytes=MAX_CONFIG_BYTES)
    if meta.get("format") != "dagnet-layers" or not isinstance(meta.get("config"), dict):
        raise CorruptFileError(config_file, "not a dagnet-layers model config")
    unknown = sorted(set(meta) - _META_FIELDS)
    if unknown:
        raise CorruptFileError(config_file, f"unknown field(s) {unknown[:5]}; a dagnet-layers "
                               f"config.json holds only {sorted(_META_FIELDS)}")
    return meta
