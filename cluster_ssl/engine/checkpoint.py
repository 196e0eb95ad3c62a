"""Stage checkpoints: written atomically with their checksum beside them, verified on load.

``NN-NAME.pt.sha256`` holds the sha256 of the checkpoint's bytes. It is written before the
checkpoint is renamed into place and keeps the previous digests too, so a process killed
between the two writes leaves a pair that still verifies; a flipped byte, a truncated copy or
another program's ``.pt`` does not. Checkpoints written before checksums existed load
unverified.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import torch

from cluster_ssl.runtime.errors import UserError
from cluster_ssl.runtime.files import write_bytes, write_json

#: what every stage checkpoint the trainer writes holds
STAGE_KEYS = ("stage", "stage_index", "epoch", "step", "stop_reason", "method", "run")
#: digests kept in a checksum file: the new one and those a killed write may leave in place
KEPT_DIGESTS = 3


def checksum_path(path: Path) -> Path:
    """Where the checksum of checkpoint ``path`` is kept."""
    return path.with_name(path.name + ".sha256")


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` to ``path`` atomically, with its checksum.

    Args:
        state: what ``torch.save`` stores.
        path: the checkpoint file.

    Raises:
        UserError: the file cannot be written (a full disk says so; the previous
            checkpoint is left intact).
    """
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    digests = [hashlib.sha256(data).hexdigest(), *_recorded_digests(path)]
    write_json({"sha256": digests[:KEPT_DIGESTS]}, checksum_path(path))
    write_bytes(data, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load one of our own checkpoints (they hold RNG states, so not ``weights_only``).

    Args:
        path: the checkpoint file.

    Returns:
        The stored dictionary, on the CPU.

    Raises:
        UserError: the file is missing, unreadable, damaged (its checksum differs) or not
            a dictionary torch can read.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}; pass the .pt file or the run directory")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UserError(f"cannot read checkpoint {path}: {error.strerror}") from None
    recorded = _recorded_digests(path)
    if recorded and hashlib.sha256(data).hexdigest() not in recorded:
        raise UserError(
            f"checkpoint {path} is damaged: its bytes do not match the checksum written with "
            f"it ({checksum_path(path).name}); restore the file from a copy, or start a new "
            f"--out (nothing was changed)"
        )
    try:
        loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise UserError(
            f"cannot read checkpoint {path} ({type(exc).__name__}); "
            "it is not a cluster-ssl checkpoint or it is damaged"
        ) from None
    if not isinstance(loaded, dict):
        raise UserError(f"{path} is not a cluster-ssl checkpoint (it holds no dictionary)")
    return loaded


def load_stage_checkpoint(path: str | Path) -> dict[str, Any]:
    """:func:`load_checkpoint` for a stage checkpoint the trainer wrote.

    Raises:
        UserError: also when the file is a torch file of another program (it lacks the
            keys every stage checkpoint has).
    """
    checkpoint = load_checkpoint(path)
    missing = [key for key in STAGE_KEYS if key not in checkpoint]
    if missing:
        raise UserError(
            f"{path} is not a cluster-ssl stage checkpoint (it has no {', '.join(missing)}); "
            f"move it out of the run's stages/ folder"
        )
    return checkpoint


def _recorded_digests(path: Path) -> list[str]:
    """The digests the checksum file beside ``path`` allows ([] when there is none)."""
    sidecar = checksum_path(path)
    if not sidecar.is_file():
        return []
    try:
        digests = json.loads(sidecar.read_text())["sha256"]
        if isinstance(digests, list) and all(isinstance(d, str) for d in digests):
            return digests
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        pass
    raise UserError(
        f"{sidecar} is damaged, so {path} cannot be verified; restore it from a copy or "
        f"start a new --out"
    )
