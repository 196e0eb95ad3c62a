"""Checkpoints and run files: written atomically, loaded strictly, with clear errors.

A file is first written to a temporary name in the same directory, flushed to disk and
then renamed over the target, so a run killed at any moment leaves either the previous
complete file or the new complete file, never half of one.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cluster_ssl.errors import UserError


def _atomic_write(path: Path, write: Any) -> None:
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
    _atomic_write(Path(path), lambda handle: handle.write(data))


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` via a temporary file and an atomic rename."""
    _atomic_write(Path(path), lambda handle: torch.save(state, handle))


def write_array(array: np.ndarray, path: str | Path) -> None:
    """``np.save`` atomically (``.npy``)."""
    _atomic_write(Path(path), lambda handle: np.save(handle, array))


def write_json(data: Any, path: str | Path) -> None:
    """Write JSON atomically (``summary.json``, ``run.json``)."""
    text = json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n"
    _atomic_write(Path(path), lambda handle: handle.write(text.encode()))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load one of our own checkpoints (they hold RNG states, so not ``weights_only``)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}; pass the .pt file or the run directory")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise UserError(
            f"cannot read checkpoint {path} ({type(exc).__name__}); "
            "it is not a cluster-ssl checkpoint or it is damaged"
        ) from None


def load_state_strict(module: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """``load_state_dict`` that names every missing or unexpected key instead of ignoring it."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(
        key
        for key in set(own) & set(state)
        if isinstance(state[key], torch.Tensor) and own[key].shape != state[key].shape
    )
    problems = []
    if missing:
        problems.append(f"missing keys {_short(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_short(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatch at {_short(mismatched)}")
    if problems:
        raise UserError(
            f"weights for {what} do not match the model: {'; '.join(problems)}; "
            "check that the checkpoint comes from the same recipe and model settings"
        )
    module.load_state_dict(state, strict=True)


def _short(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def rng_state() -> dict[str, Any]:
    """Every random generator the training loop draws from."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
