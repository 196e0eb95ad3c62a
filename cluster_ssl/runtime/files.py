"""Files written atomically: a crash or a kill leaves the old file or the new one, never half.

A file is first written to a temporary name in the same directory, flushed to disk and
then renamed over the target. ``write_with`` takes any writer (``torch.save``...).
"""

from __future__ import annotations

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
        raise UserError(f"cannot write {path}: {error.strerror or error}") from None
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
            raise UserError(f"cannot write {path}: {error.strerror or error}") from None
        raise


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
