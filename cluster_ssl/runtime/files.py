"""Files written atomically: a crash or a kill leaves the old file or the new one, never half.

A file is first written to a temporary name in the same directory, flushed to disk and
then renamed over the target. ``write_with`` takes any writer (``torch.save``...).
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from cluster_ssl.runtime.errors import UserError


def write_with(write: Callable[[BinaryIO], Any], path: str | Path) -> None:
    """Write ``path`` atomically: ``write(handle)`` fills a temporary file that then
    replaces it."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a directory; name a file to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except (FileExistsError, NotADirectoryError):
        raise UserError(
            f"cannot write {path}: a file is where one of its folders should be"
        ) from None
    except OSError as error:
        raise UserError(write_error(error, path)) from None
    try:
        os.fchmod(fd, _new_file_mode())  # mkstemp's 0600 would hide outputs from others
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise UserError(write_error(error, path)) from None
        raise


def write_error(error: OSError, path: Path) -> str:
    """One line for a failed write: what happened to which file, and what to do."""
    if error.errno == errno.ENOSPC:
        return (
            f"no space left on device while writing {path}; free some space and run the "
            f"same command with --resume (files written before are intact)"
        )
    if error.errno == errno.EROFS:
        return f"cannot write {path}: the file system is read-only; choose another --out"
    if isinstance(error, NotADirectoryError):
        return f"cannot write {path}: a file is where one of its folders should be"
    return f"cannot write {path}: {error.strerror or error}"


def append_line(text: str, path: str | Path) -> None:
    """Append one line to a log file (``metrics.jsonl``); a failed write is a UserError."""
    path = Path(path)
    try:
        with path.open("a") as handle:
            handle.write(text + "\n")
    except OSError as error:
        raise UserError(write_error(error, path)) from None


def _new_file_mode() -> int:
    """The mode ``open`` gives a new file: 0666 less the process umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_bytes(data: bytes, path: str | Path) -> None:
    """Write a file atomically (images and pages of a report)."""
    write_with(lambda handle: handle.write(data), path)


def write_array(array: np.ndarray, path: str | Path) -> None:
    """``np.save`` atomically (``.npy``)."""
    write_with(lambda handle: np.save(handle, array), path)


def write_json(data: Any, path: str | Path) -> None:
    """Write JSON atomically (``summary.json``, ``run.json``)."""
    text = json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n"
    write_with(lambda handle: handle.write(text.encode()), path)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_json(path: str | Path, required: tuple[str, ...] = (), fix: str = "") -> dict[str, Any]:
    """A JSON object a run wrote (``run.json``, ``summary.json``...), checked.

    Args:
        path: the file.
        required: keys the object must have.
        fix: what the user can do when it is damaged (ends the message).

    Returns:
        The object.

    Raises:
        UserError: the file cannot be read, is not JSON, is not an object, or lacks a key.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror or error}") from None
    except (UnicodeDecodeError, ValueError):
        data = None
    missing = [key for key in required if not isinstance(data, dict) or key not in data]
    if not isinstance(data, dict) or missing:
        what = "is not a JSON object" if not isinstance(data, dict) else f"lacks {missing[0]!r}"
        raise UserError(f"{path} is damaged ({what}){'; ' + fix if fix else ''}")
    return data
