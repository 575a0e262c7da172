"""The library's error types: one family, each naming what went wrong and where.

Every error the library raises on purpose derives from :class:`DAGNetError`, and
also from the built-in type a caller would have caught before (``ValueError``,
``FileNotFoundError``, ``OSError``...), so ``except ValueError`` keeps working
while ``except DAGNetError`` catches exactly the library's own failures.

Failures on a file the library reads are :class:`FileError` subclasses: the
message starts with, or names, the file, and :attr:`FileError.path` holds it.

========================================  ======================================
error                                     raised when
========================================  ======================================
:class:`MissingFileError`                 a file the library needs is absent
:class:`CorruptFileError`                 a file exists but its content is not
                                          what its format says (truncated,
                                          wrong type, unparsable, bad fields)
:class:`IntegrityError`                   a file's size or SHA-256 differs from
                                          the one recorded when it was written
:class:`ImageDecodeError`                 an image cannot be decoded
:class:`ImageTooLargeError`               an image has more pixels than allowed
:class:`UnsafePathError`                  a path from a data file leaves its
                                          data root (``..``, absolute, symlink)
:class:`BadRecordError`                   a record breaks the reader policy
                                          while ``on_bad_record="error"``
:class:`ConfigError`                      a model config has a bad type or size
:class:`UnknownOptionError`               a keyword argument that does not exist
:class:`MissingDependencyError`           an optional dependency is not installed
:class:`StorageError`                     the OS refused a write (full disk...)
:class:`FolderLockedError`                another process holds a folder lock
========================================  ======================================

Example:
    >>> err = CorruptFileError("run/config.json", "not valid JSON (line 1)")
    >>> str(err), err.path, isinstance(err, ValueError)
    ('run/config.json: not valid JSON (line 1)', 'run/config.json', True)
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "BadRecordError",
    "ConfigError",
    "CorruptFileError",
    "DAGNetError",
    "FileError",
    "FolderLockedError",
    "ImageDecodeError",
    "ImageTooLargeError",
    "IntegrityError",
    "MissingDependencyError",
    "MissingFileError",
    "StorageError",
    "UnknownOptionError",
    "UnsafePathError",
    "WeightsUnavailableError",
    "check_keywords",
]


class DAGNetError(Exception):
    """Base of every error dagnet-layers raises on purpose."""


class FileError(DAGNetError):
    """A file the library reads is missing or unusable.

    Args:
        path: The file.
        problem: What is wrong with it, in words; the message is ``"<path>: <problem>"``.

    Attributes:
        path: The file, as a string.
        problem: The problem alone.
    """

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across DataLoader workers
        return (type(self), (self.path, self.problem))


class MissingFileError(FileError, FileNotFoundError):
    """A file the library needs does not exist (also a ``FileNotFoundError``)."""


class CorruptFileError(FileError, ValueError):
    """A file's content is not what its format says (also a ``ValueError``)."""


class IntegrityError(CorruptFileError):
    """A file's size or SHA-256 checksum differs from the one recorded when it was written."""


class ImageDecodeError(CorruptFileError):
    """An image file cannot be decoded (truncated, not an image, unsupported mode)."""


class ImageTooLargeError(CorruptFileError):
    """An image has more pixels than the configured bound (a decompression bomb or a mistake)."""


class UnsafePathError(DAGNetError, ValueError):
    """A path read from a data file would leave its data root.

    The message names the record and the annotated path, never whether anything
    exists outside the root.
    """


class BadRecordError(DAGNetError, ValueError):
    """A record breaks the reader policy and the policy is ``"error"`` (names the record)."""


class ConfigError(DAGNetError, ValueError):
    """A model configuration field has a wrong type or an unusable size (names the field)."""


class MissingDependencyError(DAGNetError, ImportError):
    """An optional dependency is not installed; the message gives the ``pip install`` line."""


class UnknownOptionError(DAGNetError, TypeError):
    """A keyword argument the function does not take (names the closest one it does)."""


class StorageError(DAGNetError, OSError):
    """An OS error while writing, with the path and the cause in one line.

    Keeps the ``errno`` of the original error (``errno.ENOSPC`` for a full
    disk), so callers can still tell the causes apart.
    """


class WeightsUnavailableError(DAGNetError, RuntimeError):
    """Pretrained weights are not in their library's cache and could not be downloaded."""


class FolderLockedError(DAGNetError, RuntimeError):
    """Another process holds the :class:`~dagnet_layers.storage.FolderLock` of a folder.

    Attributes:
        folder: The locked folder.
        holder: What the holder wrote into the lock file (``pid``, ``host``,
            ``since``, ``purpose``), or an empty dict if it could not be read.
    """

    def __init__(self, folder: Path, holder: Mapping[str, Any]) -> None:
        self.folder, self.holder = folder, dict(holder)
        pid = str(holder.get("pid", ""))
        who = (f"processes {pid}" if "," in pid else f"process {pid}" if pid
               else "another process")  # readers of a shared lock may be unknown
        if holder.get("host"):
            who += f" on {holder['host']}"
        if holder.get("purpose"):
            who += f" ({holder['purpose']})"
        if holder.get("since"):
            who += f", since {holder['since']}"
        super().__init__(
            f"{folder} is in use by {who}; wait for it to finish or use another folder"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.folder, self.holder))


def check_keywords(given: Iterable[str], allowed: Iterable[str], where: str) -> None:
    """Reject unknown keyword arguments, suggesting the closest allowed one.

    Args:
        given: The keyword names a caller passed.
        allowed: The names ``where`` accepts.
        where: The function, for the message.

    Raises:
        UnknownOptionError: A ``TypeError`` naming each unknown keyword, e.g.
            ``unknown option 'parition' (did you mean 'partition'?)``.

    Example:
        >>> try:
        ...     check_keywords(["parition"], ["partition", "pretrained"], "build_dagnet")
        ... except TypeError as err:
        ...     print(err)
        build_dagnet(): unknown option 'parition' (did you mean 'partition'?)
    """
    allowed = sorted(set(allowed))
    unknown = [k for k in given if k not in allowed]
    if not unknown:
        return
    parts = []
    for name in unknown:
        close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
        parts.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    noun = "option" if len(parts) == 1 else "options"
    raise UnknownOptionError(f"{where}(): unknown {noun} {', '.join(parts)}")
