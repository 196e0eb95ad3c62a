"""Stage checkpoints: written atomically, read back with one clear error for a bad file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cluster_ssl.runtime.errors import UserError
from cluster_ssl.runtime.files import write_with


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` via a temporary file and an atomic rename."""
    write_with(lambda handle: torch.save(state, handle), path)


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
