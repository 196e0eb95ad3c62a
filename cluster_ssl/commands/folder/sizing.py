"""How ``cluster`` sizes a run for a folder and the device: image side, network, length."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from cluster_ssl.commands.folder.request import FolderRequest
from cluster_ssl.config import field_names
from cluster_ssl.data.folder import DECODE_ERRORS
from cluster_ssl.models.backbones import TIMM_PREFIX
from cluster_ssl.runtime.errors import UserError
from recipes import RECIPES

#: images seen in training by a folder's default run (see :func:`default_settings`)
IMAGES_SEEN = 200_000
MIN_EPOCHS, MAX_EPOCHS = 20, 200


def native_side(paths: list[Path], sample: int = 200) -> int:
    """Median shorter side of (up to ``sample``) images, read from their headers."""
    sides = []
    for path in paths[:: max(1, len(paths) // sample)][:sample]:
        try:
            with Image.open(path) as image:
                sides.append(min(image.size))
        except DECODE_ERRORS:
            continue
    return int(statistics.median(sides)) if sides else 96


def default_settings(num_images: int, side: int, on_gpu: bool) -> dict[str, Any]:
    """Size and length for the folder and the device, before the user's ``--set``.

    Small images train at their own scale (16 or 32 px, with the CIFAR stem and crops of at
    least 30%); larger ones at 64 px on a CPU, 96 on a GPU. A quarter-width ResNet-18 on a
    CPU.

    Length: ``epochs = min(200, max(20, 200_000 // num_images))``, i.e. about
    :data:`IMAGES_SEEN` images seen in training, but never fewer than 20 epochs nor more than
    200: a folder of 1,000 images trains 200 epochs, 3,000 trains 66, 10,000 and more train
    20, and one under 1,000 stops at 200 epochs. Chosen from ACC against images seen on
    Fashion-MNIST subsets of 1,000 / 3,000 / 10,000 PNGs (tools/folder_length.py,
    docs/RESULTS.md): ACC still rose past 100,000 images seen (+0.05 to +0.08 on 1,000 and
    3,000 images) and levelled off between 150,000 and 250,000 on all three, so 10,000
    images need 20 epochs, not 30. ``--time-budget`` or ``--epochs`` set the length instead.
    """
    image_size = 16 if side <= 16 else 32 if side <= 32 else 96 if on_gpu else 64
    return {
        "image_size": image_size,
        "stem": "cifar" if image_size <= 64 else "imagenet",
        "width": 1.0 if on_gpu else 0.25,
        "backbone": "resnet18",
        "optimizer": "adam",
        "lr": 1e-3,
        "batch_size": max(2, min(256, num_images // 4)),
        "epochs": min(MAX_EPOCHS, max(MIN_EPOCHS, IMAGES_SEEN // num_images)),
        **({"crop_scale": 0.3} if image_size <= 32 else {}),
        "split": "train",  # a folder is one split, which SCAN also uses to pick its head
        "eval_split": None,
        "eval_every": 10,  # no labels to score, but collapse is reported
    }


def method_settings(
    request: FolderRequest, method: str, num_images: int, side: int, device: torch.device
) -> dict[str, Any]:
    """The run's settings: :func:`default_settings` kept to those ``method`` has (the
    autoencoder recipes have no backbone or augmentation), then the command's options."""
    recipe = RECIPES.get(method)
    known = set(field_names(recipe.config))
    settings = default_settings(num_images, side, device.type == "cuda")
    if recipe.folder is not None and recipe.folder.image_size is not None:
        settings["image_size"] = recipe.folder.image_size
    overrides = {key: value for key, value in settings.items() if key in known}
    for option, key, value in (
        ("--backbone", "backbone", request.backbone),
        ("--weights", "pretrained", request.weights),
    ):
        if value is not None and key not in known:
            raise UserError(f"{option} does not apply to {method} (it trains an autoencoder)")
        if value is not None:
            overrides[key] = value
    if str(request.backbone).startswith(TIMM_PREFIX):  # timm models take neither
        overrides = {k: v for k, v in overrides.items() if k not in ("width", "stem")}
    if request.epochs is not None:
        overrides["epochs"] = request.epochs
    return {**overrides, **request.overrides}


def folder_run_settings(
    request: FolderRequest, method: str, paths: list[Path], k: int, device: torch.device
) -> dict[str, Any]:
    """Every setting ``cluster`` gives ``method`` for the readable images ``paths`` and the
    largest k it clusters into: :func:`method_settings`, then the recipe's own sizing for
    the folder under them (the command's options keep the last word)."""
    settings = method_settings(request, method, len(paths), native_side(paths), device)
    settings["num_clusters"] = k
    return {**sized_for_folder(method, len(paths), k, settings), **settings}


def folder_methods() -> list[str]:
    """The recipes ``cluster --method`` accepts: those that declare how to size for a folder."""
    return [recipe.name for recipe in RECIPES.values() if recipe.folder is not None]


def sized_for_folder(
    method: str, num_images: int, k: int, settings: dict[str, Any]
) -> dict[str, Any]:
    """The settings ``method``'s recipe sizes for a folder of ``num_images`` and ``k``
    (:class:`~cluster_ssl.engine.recipe.FolderUse`), given those chosen so far."""
    use = RECIPES.get(method).folder
    return {} if use is None else use.sizing(num_images, k, settings)
