"""The one place where the training device and its numeric precision are chosen."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
from torch import nn

from cluster_ssl.runtime.choices import DEVICE_CHOICES, PRECISION_CHOICES
from cluster_ssl.runtime.errors import UserError


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` -> the local CUDA device when present, else CPU.

    Under ``torchrun`` each process takes ``cuda:LOCAL_RANK``.
    """
    if spec not in DEVICE_CHOICES:
        raise UserError(f"unknown device {spec!r}; use one of {', '.join(DEVICE_CHOICES)}")
    if spec == "cpu" or (spec == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError(
            "--device cuda was asked for but no CUDA device is visible; use --device cpu"
        )
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def dataset_pass_batch_size(device: torch.device, network: nn.Module | None) -> int:
    """The batch of whole-dataset passes without gradients (features for k-means, DEC's Q,
    neighbour mining, evaluation) through ``network``.

    512 on GPUs, which want large batches, and for networks without convolutions. 64 for
    convolutional networks on CPUs, where a small batch's activations stay in cache: there a
    ResNet-18's pass costs 41% less per image at 64 than at 512 with one thread (48% with
    two), the refresh passes of DeepCluster and PCL at quarter width 18-30% less (it varies
    by run) and DCEC's P refresh half, while DEC's through its fully connected encoder takes
    24% longer (docs/BENCHMARKS.md). A timm ViT, whose patch embedding is a convolution,
    also gets 64, where a ViT-Tiny at 224 px costs 15% less per image than at 256. The
    modules are in eval mode, so the rows differ between batch sizes by float rounding at
    most.
    """
    if device.type == "cuda" or network is None:
        return 512
    return 64 if any(isinstance(module, nn.Conv2d) for module in network.modules()) else 512


def resolve_precision(spec: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``spec`` on ``device``; None means full fp32.

    ``auto`` is bf16 on CUDA devices that support it (no loss scaling, no fp16 NaNs), fp16
    on older CUDA devices, and fp32 on the CPU.
    """
    if spec not in PRECISION_CHOICES:
        raise UserError(f"unknown precision {spec!r}; use one of {', '.join(PRECISION_CHOICES)}")
    if spec == "fp32" or (spec == "auto" and device.type != "cuda"):
        return None
    if spec == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if spec == "fp16" and device.type != "cuda":
        raise UserError("fp16 autocast needs a CUDA device; use --precision bf16 or fp32 on CPU")
    return torch.bfloat16 if spec == "bf16" else torch.float16


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """Mixed precision for the forward pass, or nothing when ``dtype`` is None."""
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """A loss scaler that is active only for fp16 (bf16 and fp32 need none)."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Move a batch; pinned host tensors are copied asynchronously on CUDA."""
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}
