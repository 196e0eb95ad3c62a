"""MoCo's two pieces of state (He et al., 2020): a momentum encoder and a queue of keys."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from cluster_ssl.runtime.distributed import all_gather_rows


class MomentumEncoder(nn.Module):
    """An exponential moving average copy of an encoder, never trained by the optimiser.

    Built from the online modules (PCL: backbone, then projection head), deep-copied and
    chained, with ``requires_grad`` off so that no optimiser collects its parameters. Each
    step, before the keys are computed, :meth:`update` moves every parameter towards the
    online one (MoCo, eq. 2):

        theta_k <- m * theta_k + (1 - m) * theta_q

    MoCo uses m = 0.999 on ImageNet; PCL's CIFAR reproduction 0.99. As in MoCo, the
    BatchNorm running statistics are not averaged: the copy's own forward passes in train
    mode update them. The copied parameters and buffers are in the owner's ``state_dict``,
    so a resumed run continues from the same average.

    Args:
        *online: the online modules to copy, in the order they are applied.
        momentum: m, the weight of the average, in [0, 1).

    Raises:
        ValueError: ``momentum`` outside [0, 1).
    """

    def __init__(self, *online: nn.Module, momentum: float) -> None:
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.encoder = nn.Sequential(*(copy.deepcopy(module) for module in online))
        self.encoder.requires_grad_(False)
        self.momentum = momentum

    @torch.no_grad()
    def reset(self, *online: nn.Module) -> None:
        """Restart the copy from the online modules' current weights.

            theta_k <- theta_q

        Args:
            *online: the modules it was built from, in the same order.

        Raises:
            ValueError: the modules' parameters do not match the copy's.
        """
        momentum, self.momentum = self.momentum, 0.0
        self.update(*online)
        self.momentum = momentum

    @torch.no_grad()
    def update(self, *online: nn.Module) -> None:
        """Move every parameter of the copy towards the online one (MoCo, eq. 2).

            theta_k <- m theta_k + (1 - m) theta_q

        Args:
            *online: the modules it was built from, in the same order.

        Raises:
            ValueError: the modules' parameters do not match the copy's.
        """
        own = list(self.encoder.parameters())
        sources = [p for module in online for p in module.parameters()]
        if len(own) != len(sources) or any(
            a.shape != b.shape for a, b in zip(own, sources, strict=True)
        ):
            raise ValueError("the online modules do not match the momentum encoder's copy")
        for average, current in zip(own, sources, strict=True):
            average.mul_(self.momentum).add_(current.detach(), alpha=1.0 - self.momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the averaged copy without recording gradients (e.g. to compute the keys).

        Args:
            x: a batch of the online modules' input, e.g. (N, C, H, W) images.

        Returns:
            The chained modules' output for ``x``, e.g. (N, d) keys; no gradient flows
            through it.
        """
        with torch.no_grad():
            return self.encoder(x)

    def extra_repr(self) -> str:
        """The settings shown in the module's ``repr``.

        Returns:
            ``"momentum=..."``.
        """
        return f"momentum={self.momentum}"


class KeyQueue(nn.Module):
    """MoCo's queue: a FIFO ring buffer of the most recent ``size`` L2-normalised keys.

    ``keys`` (size, dim) starts as L2-normalised Gaussian noise from a generator seeded
    with ``seed`` (the same on every rank); ``pointer`` is the row the next key is written
    to, so the oldest key sits at ``pointer``. Both are buffers, saved in the owner's
    ``state_dict``: a resumed run continues with the same negatives.

    :meth:`enqueue` gathers the keys of every rank first, so all ranks hold the same queue.
    It replaces the ``keys`` tensor rather than writing into it, so a loss that used the
    queue before the update can still be differentiated afterwards.

    Args:
        size: the number of keys held.
        dim: size of each key.
        seed: seed of the generator that draws the initial keys.

    Raises:
        ValueError: ``size`` or ``dim`` below 1.
    """

    keys: torch.Tensor
    pointer: torch.Tensor

    def __init__(self, size: int, dim: int, *, seed: int = 0) -> None:
        super().__init__()
        if size < 1 or dim < 1:
            raise ValueError(f"need size >= 1 and dim >= 1, got {size}, {dim}")
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer(
            "keys", F.normalize(torch.randn(size, dim, generator=generator), dim=1)
        )
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        """The number of keys held (rows of ``keys``)."""
        return self.keys.shape[0]

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write the keys of every rank (in rank order) over the oldest entries.

        The pointer moves on by the number written. The keys are L2-normalised and
        detached. When more keys arrive than the queue holds, only the newest ``size`` are
        kept.

        Args:
            keys: (B, dim) this rank's keys.

        Raises:
            ValueError: ``keys`` is not (B, dim).
        """
        if keys.dim() != 2 or keys.shape[1] != self.keys.shape[1]:
            raise ValueError(f"keys must be (B, {self.keys.shape[1]}), got {tuple(keys.shape)}")
        keys = F.normalize(keys.detach(), dim=1).to(device=self.keys.device, dtype=self.keys.dtype)
        keys = all_gather_rows(keys)[-self.size :]
        count = keys.shape[0]
        rows = (self.pointer + torch.arange(count, device=self.keys.device)) % self.size
        self.keys = self.keys.index_copy(0, rows, keys)
        self.pointer.copy_((self.pointer + count) % self.size)
