"""The one helper that runs a function over the whole dataset, in order, on every rank."""

from __future__ import annotations

from collections.abc import Callable

import torch

from cluster_ssl.data.base import ImageDataset
from cluster_ssl.data.loaders import make_batches
from cluster_ssl.runtime.distributed import DistInfo, all_gather_rows
from cluster_ssl.runtime.timing import timed

BatchFn = Callable[[dict[str, torch.Tensor]], torch.Tensor]


@torch.no_grad()
def embed(
    fn: BatchFn,
    dataset: ImageDataset,
    device: torch.device,
    *,
    batch_size: int,
    dist: DistInfo | None = None,
    num_workers: int = 2,
) -> torch.Tensor:
    """``fn`` applied to every sample, returned as one (N, ...) tensor in dataset order.

    Under DDP each rank processes its shard and the rows are gathered, so every rank
    receives the full result. ``fn`` gets a batch dict (``image`` uint8 on the device,
    ``index``, ``label``) and returns one row per sample; the caller puts its modules in
    eval mode. Under a :class:`~cluster_ssl.runtime.timing.StepTimer` the pass is timed
    as the part ``dataset_pass`` of the section that called it.
    """
    with timed("dataset_pass", part=True):
        batches = make_batches(
            dataset,
            batch_size,
            device,
            shuffle=False,
            drop_last=False,
            seed=0,
            dist=dist or DistInfo(),
            num_workers=num_workers,
        )
        rows, indices = [], []
        for batch in batches:
            rows.append(fn(batch).float())
            indices.append(batch["index"])
        local_rows = torch.cat(rows)
        local_index = torch.cat(indices)
        all_rows = all_gather_rows(local_rows)
        all_index = all_gather_rows(local_index)
        out = torch.empty_like(all_rows)
        out[all_index] = all_rows
        return out
