"""torch.distributed plumbing: process group set-up, rank queries, gathers and broadcasts.

Launch with ``torchrun``; NCCL on CUDA, gloo on CPU. Everything here is a no-op for a
single process, so methods call it unconditionally.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment, if any."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size())


def current() -> DistInfo:
    if dist.is_available() and dist.is_initialized():
        return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size())
    return DistInfo()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Send ``obj`` from rank ``src`` to every rank (identity for one process)."""
    if not current().enabled:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def barrier() -> None:
    if current().enabled:
        dist.barrier()


def all_gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's ``x`` along dim 0 (no gradient); rows may differ per rank."""
    if not current().enabled:
        return x
    return _gather_padded(x, _rows_per_rank(x.shape[0], x.device))


def _gather_padded(x: torch.Tensor, counts: list[int]) -> torch.Tensor:
    """All-gather rows of unequal count: pad to the longest, gather, trim, concatenate."""
    padded = x.new_zeros((max(counts), *x.shape[1:]))
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(parts, padded)
    return torch.cat([part[:c] for part, c in zip(parts, counts, strict=True)])


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Average a tensor over ranks (no gradient); used for logged values."""
    if not current().enabled:
        return x
    x = x.detach().clone()
    dist.all_reduce(x)
    return x / current().world_size


def _rows_per_rank(rows: int, device: torch.device) -> list[int]:
    """Every rank's row count, in rank order (a collective: all ranks must call it)."""
    count = torch.tensor([rows], device=device)
    counts = [torch.zeros_like(count) for _ in range(current().world_size)]
    dist.all_gather(counts, count)
    return [int(c.item()) for c in counts]


def rank_offset(rows: int, device: torch.device | None = None) -> int:
    """Index of this rank's first row in a dim-0 gather (:func:`gather_with_grad`).

    Row counts may differ between ranks, so this is a collective (one scalar all-gather):
    every rank must call it. ``device`` is where the count tensor lives (the communication
    device: CUDA for NCCL, CPU for gloo). Returns 0 for one process.
    """
    info = current()
    if not info.enabled:
        return 0
    return sum(_rows_per_rank(rows, device or torch.device("cpu"))[: info.rank])


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward sums the gradient over ranks (see below)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        info = current()
        counts = _rows_per_rank(x.shape[0], x.device)
        ctx.start = sum(counts[: info.rank])
        ctx.rows = x.shape[0]
        return _gather_padded(x, counts)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.start : ctx.start + ctx.rows]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's ``x`` along dim 0, with gradients flowing back to each rank.

    Rows may differ per rank; this rank's rows start at :func:`rank_offset`. Identity for
    one process. Every rank must call it (a collective), in forward and, for inputs that
    require grad, in backward.

    Why the backward all-reduces. Under DDP rank r computes a loss L_r, and DDP *averages*
    the parameter gradients, so the objective actually optimised is
    L = (1/W) sum_r L_r over W ranks. Rank s's rows x_s enter every L_r (as negatives,
    or as part of a batch statistic), so the correct gradient of L at x_s is
    (1/W) sum_r dL_r/dx_s. Rank r's backward only produces dL_r/d(gathered), whose slice
    for rank s is dL_r/dx_s; summing those gradients over ranks (all-reduce SUM) and
    returning this rank's slice gives sum_r dL_r/dx_s on rank s, and DDP's 1/W finishes
    the job. A gather that only keeps the local slice's gradient (or a plain
    ``all_gather`` with the local rows re-inserted) drops the other ranks' terms; when every
    rank computes the same loss on the gathered batch (L_r = L, e.g. CC's cluster loss),
    that yields dL/dx_s and DDP's averaging then scales the true gradient by 1/W.
    """
    if not current().enabled:
        return x
    return _GatherWithGrad.apply(x)
