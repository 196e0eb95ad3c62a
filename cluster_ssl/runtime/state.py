"""Process state a run saves and restores: module weights loaded strictly, and the RNGs."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch import nn

from cluster_ssl.runtime.errors import UserError


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


#: the seeds every generator takes (torch's is 64-bit)
MAX_SEED = 2**63 - 1


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices).

    Raises:
        UserError: ``seed`` is not a whole number from 0 to :data:`MAX_SEED`.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise UserError(f"--seed {seed}: give a whole number from 0 to {MAX_SEED}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
