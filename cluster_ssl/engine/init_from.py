"""``--init-from CHECKPOINT``: start a recipe's network from another run's trained one.

The network is what the first stage trains and every later stage shares: the backbone
(contrastive and clustering recipes) or the autoencoder (DEC, IDEC, DCEC). Its weights are
found in the source stage checkpoint under whatever prefix the source method keeps them
(``backbone.``, ``pretext.backbone.``, ``autoencoder.``, ...): the prefix under which the
most of the target's keys are found. They are then loaded strictly: every missing,
unexpected or differently shaped key is named, and nothing is loaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from cluster_ssl.engine.checkpoint import load_checkpoint
from cluster_ssl.engine.trainer import compiled_module
from cluster_ssl.methods.base import Method
from cluster_ssl.runtime.errors import UserError
from cluster_ssl.runtime.state import load_state_strict


def stage_checkpoint_path(path: Path) -> Path:
    """A stage checkpoint itself, or a run directory's final stage checkpoint."""
    path = Path(path)
    if not path.is_dir():
        return path
    candidates = sorted((path / "stages").glob("*.pt"))
    if not candidates:
        raise UserError(f"{path} holds no checkpoint (no stages/*.pt)")
    return candidates[-1]


def network_prefix(source: dict[str, torch.Tensor], target_keys: set[str]) -> str:
    """The key prefix of ``source`` under which the most of ``target_keys`` are found."""
    prefixes = {
        key[: len(key) - len(name)] for key in source for name in target_keys if key.endswith(name)
    }
    if not prefixes:
        return ""

    def covered(prefix: str) -> int:
        return sum(prefix + name in source for name in target_keys)

    return max(sorted(prefixes, key=len), key=covered)


def init_network_from(method: Method, path: Path) -> str:
    """Load the network of the checkpoint at ``path`` into ``method``'s; returns a line
    saying what was loaded."""
    path = stage_checkpoint_path(path)
    if not path.is_file():
        raise UserError(
            f"--init-from: no checkpoint at {path}; pass a stage .pt or a run directory"
        )
    checkpoint = load_checkpoint(path)
    if "method" not in checkpoint:
        raise UserError(f"--init-from: {path} is not a cluster-ssl stage checkpoint")
    source = {k: v for k, v in checkpoint["method"].items() if isinstance(v, torch.Tensor)}
    network: nn.Module = compiled_module(method)
    target_keys = set(network.state_dict())
    prefix = network_prefix(source, target_keys)
    chosen = {key[len(prefix) :]: value for key, value in source.items() if key.startswith(prefix)}
    where = f"the {type(network).__name__} of {path}" + (
        f" (keys under {prefix!r})" if prefix else ""
    )
    load_state_strict(network, chosen, f"--init-from {where}")
    method.on_network_loaded()
    return f"initialised the {type(network).__name__} from {where}: {len(chosen)} tensors"
