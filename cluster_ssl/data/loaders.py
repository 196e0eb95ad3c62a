"""Batches for training and for whole-dataset passes.

Two paths with one interface (``set_epoch``, ``len``, iteration yielding
``{"image": uint8 (B, C, H, W), "label": int64 (B,), "index": int64 (B,)}`` on the device):

* :class:`DeviceBatches` keeps a small dataset on the device as uint8 and slices batches
  there: no worker process and no host-to-device copy per step.
* :class:`StreamingBatches` wraps a ``DataLoader`` for file-backed datasets, with pinned
  memory and non-blocking copies on CUDA.

Both order samples from a generator seeded by ``(seed, epoch)``, so an epoch replays
exactly on resume, and both shard by rank the way ``DistributedSampler`` does (the
permutation is padded by wrap-around so every rank gets the same number of batches).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Sampler

from cluster_ssl.data.base import ImageDataset, TensorImageDataset
from cluster_ssl.runtime.device import to_device
from cluster_ssl.runtime.distributed import DistInfo
from cluster_ssl.runtime.errors import UserError


def epoch_order(
    n: int,
    *,
    shuffle: bool,
    seed: int,
    epoch: int,
    dist: DistInfo,
    pad: bool,
    order: torch.Tensor | None = None,
) -> torch.Tensor:
    """This rank's sample indices for one epoch (from ``order`` when one is given)."""
    if order is not None:
        order = order.cpu()
    elif shuffle:
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(n, generator=generator)
    else:
        order = torch.arange(n)
    if not dist.enabled:
        return order
    if pad:
        total = math.ceil(n / dist.world_size) * dist.world_size
        order = torch.cat([order, order[: total - n]])
    return order[dist.rank :: dist.world_size]


class _Batches:
    def __init__(
        self,
        dataset: ImageDataset,
        batch_size: int,
        device: torch.device,
        *,
        shuffle: bool,
        drop_last: bool,
        seed: int,
        dist: DistInfo,
    ) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.device = device
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.dist = dist
        self.epoch = 0
        self.sample_order: torch.Tensor | None = None

    def set_epoch(self, epoch: int, order: torch.Tensor | None = None) -> None:
        """Start epoch ``epoch``: shuffled by (seed, epoch), or in the given ``order`` of
        ``len(dataset)`` sample indices (a method's own sampling)."""
        if order is not None and len(order) != len(self.dataset):
            raise ValueError(f"an epoch order needs {len(self.dataset)} indices, got {len(order)}")
        self.epoch = epoch
        self.sample_order = order

    def order(self) -> torch.Tensor:
        return epoch_order(
            len(self.dataset),
            shuffle=self.shuffle,
            seed=self.seed,
            epoch=self.epoch,
            dist=self.dist,
            pad=self.shuffle,
            order=self.sample_order,
        )

    def __len__(self) -> int:
        per_rank = len(self.order())
        if self.drop_last:
            return max(per_rank // self.batch_size, 1 if per_rank else 0)
        return math.ceil(per_rank / self.batch_size)

    def index_batches(self, order: torch.Tensor | None = None) -> Iterator[torch.Tensor]:
        order = self.order() if order is None else order
        for b in range(len(self)):
            yield order[b * self.batch_size : (b + 1) * self.batch_size]


class DeviceBatches(_Batches):
    """Slices batches out of a device-resident uint8 copy of the dataset."""

    def __init__(self, dataset: TensorImageDataset, batch_size: int, device: torch.device, **kw):
        super().__init__(dataset, batch_size, device, **kw)
        self.images = dataset.images.to(device)
        labels = dataset.labels if dataset.labels is not None else [-1] * len(dataset)
        self.labels = torch.as_tensor(labels, dtype=torch.long, device=device)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for index in self.index_batches(self.order().to(self.device)):
            yield {"image": self.images[index], "label": self.labels[index], "index": index}


class _ListSampler(Sampler[int]):
    def __init__(self, batches: StreamingBatches) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[int]:
        for index in self.batches.index_batches():
            yield from index.tolist()

    def __len__(self) -> int:
        return sum(len(i) for i in self.batches.index_batches())


class StreamingBatches(_Batches):
    """Decodes files in ``num_workers`` processes and copies batches to the device."""

    def __init__(
        self,
        dataset: ImageDataset,
        batch_size: int,
        device: torch.device,
        *,
        num_workers: int = 2,
        **kw,
    ) -> None:
        super().__init__(dataset, batch_size, device, **kw)
        self.loader = DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=_ListSampler(self),
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
            persistent_workers=False,
            drop_last=False,
        )

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        try:
            for batch in self.loader:
                yield to_device(
                    {"image": batch["image"], "label": batch["label"], "index": batch["index"]},
                    self.device,
                )
        except UserError as error:
            raise UserError(worker_message(error)) from None


def worker_message(error: UserError) -> str:
    """The user's one-line message out of a DataLoader worker's re-raised error.

    A worker's exception comes back with the worker's traceback folded into its message;
    the original message is the last line, after the exception's qualified name.
    """
    last = str(error).strip().splitlines()[-1]
    return last.split("UserError: ", 1)[-1]


def make_batches(
    dataset: ImageDataset,
    batch_size: int,
    device: torch.device,
    *,
    shuffle: bool,
    drop_last: bool,
    seed: int,
    dist: DistInfo,
    num_workers: int = 2,
) -> DeviceBatches | StreamingBatches:
    """The right batch source for ``dataset``: device-resident when it is held in memory."""
    kw = {"shuffle": shuffle, "drop_last": drop_last, "seed": seed, "dist": dist}
    if isinstance(dataset, TensorImageDataset):
        return DeviceBatches(dataset, batch_size, device, **kw)
    return StreamingBatches(dataset, batch_size, device, num_workers=num_workers, **kw)
