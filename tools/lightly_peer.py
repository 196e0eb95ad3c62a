"""lightly's way of training the network of one of our stages, for
``benchmark.py METHOD --reference lightly``.

lightly (https://github.com/lightly-ai/lightly) feeds a network as its examples do: a
torchvision dataset of PIL images, ``SimCLRTransform`` making two views of each image in
``DataLoader`` worker processes, one forward pass per view, ``NTXentLoss``. Here it trains a
copy of our stage's own network (backbone and heads) with our stage's optimiser, on the
same images, with the transform set to our pipeline's augmentation strengths (crop scale,
flip, colour jitter and its probability, grayscale, blur, normalisation), so the two
measurements differ only in how the data is fed and the steps are run.

lightly has NT-Xent, SimCLR's loss (and SCAN's SimCLR pretext's), but not CC's cluster-level
loss: for CC its ``NTXentLoss`` contrasts the instance head's features and, on the
transposed (K, B) soft assignments, the cluster head's columns, which is CC's cluster
contrast; CC's entropy of the cluster sizes (which lightly does not have) is added from
:func:`cluster_ssl.losses.cc.cluster_size_entropy`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from cluster_ssl.augment.pipelines import TwoViews
from cluster_ssl.augment.transforms import (
    ColorJitter,
    Normalize,
    RandomGaussianBlur,
    RandomGrayscale,
    RandomResizedCrop,
    ToFloat,
)
from cluster_ssl.data.base import ImageDataset
from cluster_ssl.losses.cc import cluster_size_entropy
from cluster_ssl.methods.base import Method
from cluster_ssl.methods.cc import CC
from cluster_ssl.methods.simclr import SimCLR
from cluster_ssl.runtime.errors import UserError

#: how to install the optional extra that brings lightly
INSTALL_HINT = "pip install -e '.[bench]'"


def import_lightly() -> tuple[type, type]:
    """lightly's ``NTXentLoss`` and ``SimCLRTransform``, or a one-line UserError naming the
    extra that installs them."""
    try:
        from lightly.loss import NTXentLoss
        from lightly.transforms import SimCLRTransform
    except ImportError:
        raise UserError(f"--reference lightly needs the lightly package: {INSTALL_HINT}") from None
    return NTXentLoss, SimCLRTransform


def transform_settings(views: TwoViews) -> dict[str, Any]:
    """``SimCLRTransform``'s arguments for the augmentation strengths of our two-view
    pipeline (the same pipeline makes both views in SimCLR and CC)."""
    settings: dict[str, Any] = {"cj_prob": 0.0, "random_gray_scale": 0.0, "gaussian_blur": 0.0}
    for step in views.pipeline_a:
        if isinstance(step, RandomResizedCrop):
            settings |= {"input_size": step.size, "min_scale": step.scale[0]}
            settings["hf_prob"] = step.flip_p
        elif isinstance(step, ColorJitter):
            settings |= {"cj_prob": step.p, "cj_strength": 1.0, "cj_bright": step.brightness}
            settings |= {"cj_contrast": step.contrast, "cj_sat": step.saturation}
            settings["cj_hue"] = step.hue
        elif isinstance(step, RandomGrayscale):
            settings["random_gray_scale"] = step.p
        elif isinstance(step, RandomGaussianBlur):
            settings |= {"gaussian_blur": step.p, "sigmas": tuple(step.sigma)}
        elif isinstance(step, Normalize):
            mean, std = step.mean.flatten().tolist(), step.std.flatten().tolist()
            settings["normalize"] = {"mean": mean, "std": std}
        elif not isinstance(step, ToFloat):
            raise UserError(f"--reference lightly: no SimCLRTransform setting for {step!r}")
    return settings


def lightly_loss(method: Method, ntxent: type) -> Callable[[torch.Tensor, torch.Tensor], Any]:
    """The loss of one step, lightly's way: each view through the network on its own, then
    lightly's NT-Xent (CC: on both heads, with CC's entropy term)."""
    if isinstance(method, SimCLR):
        contrast = ntxent(temperature=method.temperature)

        def simclr(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
            return contrast(method.head(method.backbone(x0)), method.head(method.backbone(x1)))

        return simclr
    if isinstance(method, CC):
        instances = ntxent(temperature=method.instance_temperature)
        clusters = ntxent(temperature=method.cluster_temperature)

        def cc(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
            h0, h1 = method.backbone(x0), method.backbone(x1)
            c0, c1 = method.cluster_head(h0), method.cluster_head(h1)
            entropy = cluster_size_entropy(c0) + cluster_size_entropy(c1)
            return (
                instances(method.instance_head(h0), method.instance_head(h1))
                + clusters(c0.t(), c1.t())
                - method.entropy_weight * entropy
            )

        return cc
    raise UserError(
        f"--reference lightly: lightly has no loss of {type(method).__name__}; "
        "compare simclr, cc or scan (its SimCLR pretext)"
    )


class _PILImages(torch.utils.data.Dataset):
    """``length`` items cycling over ``dataset``, each a PIL image (as torchvision's CIFAR-10
    gives them) through ``transform``."""

    def __init__(self, dataset: ImageDataset, length: int, transform: Callable) -> None:
        self.dataset = dataset
        self.length = length
        self.transform = transform

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Any:
        image = self.dataset[index % len(self.dataset)]["image"]
        pixels = np.ascontiguousarray(image.permute(1, 2, 0).squeeze(2).numpy())
        return self.transform(Image.fromarray(pixels))


class LightlyStep:
    """A copy of ``method``'s network trained lightly's way, ``steps`` steps a round."""

    def __init__(
        self,
        method: Method,
        dataset: ImageDataset,
        *,
        batch_size: int,
        steps: int,
        workers: int,
        device: torch.device,
    ) -> None:
        ntxent, simclr_transform = import_lightly()
        self.network: nn.Module = copy.deepcopy(method).to(device).train()
        self.loss = lightly_loss(self.network, ntxent)
        self.optimizer = self.network.configure_optimizer()
        self.device = device
        self.steps = steps
        transform = simclr_transform(**transform_settings(self.network.views))
        self.loader = torch.utils.data.DataLoader(
            _PILImages(dataset, batch_size * steps, transform),
            batch_size=batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=workers,
            persistent_workers=workers > 0,
        )

    def run(self) -> float:
        """Seconds a step took in one round of ``steps`` steps, timed from its first batch
        on: the workers' filling of their queue at the start of an epoch is left out (in
        training it comes once an epoch, here once a round), which can only favour lightly."""
        batches = iter(self.loader)
        views = next(batches)
        started = time.perf_counter()
        for step in range(self.steps):
            x0, x1 = (view.to(self.device, non_blocking=True) for view in views)
            self.optimizer.zero_grad(set_to_none=True)
            self.loss(x0, x1).backward()
            self.optimizer.step()
            if step + 1 < self.steps:
                views = next(batches)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return (time.perf_counter() - started) / self.steps
