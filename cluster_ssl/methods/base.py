"""The contract between a method and the trainer.

A method owns the modules it trains and the losses it computes; the trainer owns the
loop, devices, precision, distribution, checkpoints and logging, and knows no method by
name. Hooks that need the whole dataset (k-means initialisation, DEC's target
distribution, mined neighbours, memory banks) go through ``ctx.embed`` so that no method
writes its own feature-extraction loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from cluster_ssl.cluster.prediction import Prediction
from cluster_ssl.data.base import ImageDataset
from cluster_ssl.methods.embed import embed
from cluster_ssl.runtime.device import autocast, dataset_pass_batch_size
from cluster_ssl.runtime.distributed import DistInfo, broadcast_object

Batch = dict[str, torch.Tensor]


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's draws that every rank, and any number of ranks, must make
    alike (DeepCluster's k-means, head and sample order, SCAN's neighbour picks); a
    non-negative 31-bit int, as faiss takes."""
    return (seed * 1_000_003 + epoch) % 2**31


@dataclass
class StageContext:
    """What a method may use from the run: data, device, rank and the global step."""

    dataset: ImageDataset
    device: torch.device
    seed: int
    dist: DistInfo = field(default_factory=DistInfo)
    step: int = 0
    epoch: int = 0
    #: overrides the batch of whole-dataset passes (default: :func:`dataset_pass_batch_size`
    #: of the device and ``network``)
    pass_batch_size: int | None = None
    num_workers: int = 2
    #: whether ``dataset`` is the split the stage trains on (not a held-out split)
    training_data: bool = True
    #: the run's evaluation split when it differs from the training split, else None
    heldout: ImageDataset | None = None
    #: the in-memory dataset's images on the device (the trainer shares its batches' copy)
    device_images: torch.Tensor | None = field(default=None, repr=False)
    #: the network of the method using this context (:meth:`Method.network`), which sets the
    #: batch of ``embed`` on CPUs; the trainer sets it for each stage
    network: nn.Module | None = field(default=None, repr=False)
    #: the autocast dtype of ``embed`` (None: fp32): the trainer sets its training steps'
    #: precision, so the passes of a bf16 or fp16 run (DEC's Q, k-means features, mining)
    #: run as fast as its steps, on the network as it computes in training; predictions
    #: after training keep fp32
    precision: torch.dtype | None = None

    def embed(
        self, fn: Callable[[Batch], torch.Tensor], dataset: ImageDataset | None = None
    ) -> torch.Tensor:
        """``fn`` over every sample of ``dataset`` (default: the training data), in order,
        gathered across ranks, under autocast to ``precision``; rows come back in fp32."""
        with autocast(self.device, self.precision):
            return embed(
                fn,
                self.dataset if dataset is None else dataset,
                self.device,
                batch_size=self.pass_batch_size
                or dataset_pass_batch_size(self.device, self.network),
                dist=self.dist,
                num_workers=self.num_workers,
            )

    def images_at(self, index: torch.Tensor) -> torch.Tensor:
        """The uint8 images (B, C, H, W) of the given training samples, on the device.

        For SCAN's neighbours and similar pairings. An in-memory dataset is indexed on the
        device (the copy the training batches come from, else one made here); a file-backed
        one is decoded here, in this process.
        """
        if self.dataset.in_memory:
            if self.device_images is None:
                self.device_images = self.dataset.images.to(self.device)
            return self.device_images[index.to(self.device)]
        images = torch.stack([self.dataset[i]["image"] for i in index.tolist()])
        return images.to(self.device, non_blocking=True)

    def on_main(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on rank 0 only and hand its result to every rank (e.g. k-means)."""
        result = fn() if self.dist.is_main else None
        return broadcast_object(result)


class Method(nn.Module):
    """Base class: a training objective over the modules it holds.

    Subclasses implement ``training_step``, ``configure_optimizer`` and ``predict``, and
    override the hooks they need. Per-method state that is not a parameter (a target
    distribution, a memory bank) goes in ``get_extra_state`` / ``set_extra_state`` so it
    is checkpointed with the weights.
    """

    #: where predictions come from: "parameters" (DEC's centres), "head" (a cluster head), or
    #: "kmeans" (k-means on the embedding, so k can be chosen after training)
    clusters_by: ClassVar[str] = "parameters"

    #: set when some held parameters receive no gradient in a step (DDP needs to know)
    find_unused_parameters: bool = False
    #: whether DDP re-sends rank 0's buffers (BatchNorm statistics) before every forward
    broadcast_buffers: bool = True

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        return self.training_step(batch)

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Losses for one batch; ``"loss"`` is what is minimised, other keys are logged."""
        raise NotImplementedError

    def configure_optimizer(self) -> torch.optim.Optimizer:
        raise NotImplementedError

    def configure_scheduler(
        self, optimizer: torch.optim.Optimizer, total_steps: int, steps_per_epoch: int
    ) -> torch.optim.lr_scheduler.LRScheduler | None:
        """The learning-rate schedule over the stage's ``total_steps`` optimiser steps,
        ``steps_per_epoch`` of them an epoch; None keeps the rate constant."""
        return None

    def on_fit_start(self, ctx: StageContext) -> None:
        """Called once when the stage starts fresh (not on resume)."""

    def prepare_batch(self, batch: Batch, ctx: StageContext) -> Batch:
        """Add what a step needs beyond the batch itself (SCAN: each anchor's neighbour
        images); runs before the forward pass, outside DDP."""
        return batch

    def on_step_start(self, ctx: StageContext) -> None:
        """Called before every optimisation step (``ctx.step`` steps done so far)."""

    def on_step_end(self, ctx: StageContext) -> None:
        """Called after every optimisation step, the optimiser's update applied
        (``ctx.step`` counts it)."""

    def on_epoch_start(self, ctx: StageContext) -> dict[str, float]:
        """Called in eval mode before every epoch (pseudo-labels, E-steps); returns values
        to log."""
        return {}

    def sample_order(self, ctx: StageContext) -> torch.Tensor | None:
        """The epoch's order of sample indices (all ranks together), or None to shuffle.

        Lets a method sample by its own rule (DeepCluster: uniformly over pseudo-classes);
        the order must have one entry per sample and depend only on the seed and epoch.
        """
        return None

    def on_epoch_end(self, ctx: StageContext) -> dict[str, float]:
        """Called after every epoch; returns values to log."""
        return {}

    def stop_reason(self) -> str | None:
        """A sentence saying why training should end early (DEC's tolerance), or None."""
        return None

    def predict(self, ctx: StageContext) -> Prediction:
        raise NotImplementedError

    def predict_new(
        self, training: StageContext, new: StageContext, centres: np.ndarray | None = None
    ) -> Prediction:
        """Assign the images of ``new`` to the clusters learned on ``training``.

        Right as is for methods whose clusters are parameters (a cluster head, DEC's
        centres); methods that cluster by k-means override it to keep the training
        clusters instead of clustering the new images afresh. ``centres`` are those
        training clusters' centres when the caller already has them (``Prediction.centres``
        of the training data), which saves a k-means method re-embedding its training data.
        """
        return self.predict(new)

    def predict_new_reads_training_data(self) -> bool:
        """Whether :meth:`predict_new` embeds the training data when not given ``centres``
        (a method that clusters by k-means finds its training clusters again)."""
        return False

    def network(self) -> nn.Module | None:
        """The network the method trains and later stages share: its backbone, or its
        autoencoder (what ``--compile`` compiles and ``--init-from`` loads)."""
        for name in ("backbone", "autoencoder"):
            module = getattr(self, name, None)
            if isinstance(module, nn.Module):
                return module
        return None

    def on_network_loaded(self) -> None:
        """Called after ``--init-from`` replaced :meth:`network`'s weights (copies of it,
        such as a momentum encoder, follow)."""

    def collapse_hint(self) -> str:
        """The setting to change when predictions use fewer clusters than asked for."""
        return "check the learning rate and train longer"
