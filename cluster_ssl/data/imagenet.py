"""ImageNet subsets (ImageNet-10, ImageNet-Dogs) and Tiny-ImageNet, decoded lazily from JPEGs.

ImageNet subsets read ``root/train/<wnid>/*`` ("train") and ``root/val/<wnid>/*`` ("test", the
validation set sorted into class folders as torchvision's ImageNet and ``valprep.sh`` do).
Tiny-ImageNet reads ``root/tiny-imagenet-200/train/<wnid>/images/*`` ("train") and
``val/images/*`` labelled by ``val/val_annotations.txt`` ("test").
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cluster_ssl.data.common import locate_folder, no_download, not_found, require_root
from cluster_ssl.data.folder import FileImageDataset, is_image_file
from cluster_ssl.runtime.errors import UserError

# Class lists as given in REFERENCE.md (CC / PICA / IDFD's subsets); labels follow this order.
IMAGENET10_WNIDS = [
    "n02056570",
    "n02085936",
    "n02128757",
    "n02690373",
    "n02692877",
    "n03095699",
    "n04254680",
    "n04285008",
    "n04467665",
    "n07747607",
]
IMAGENET_DOGS_WNIDS = [
    "n02085936",
    "n02086646",
    "n02088238",
    "n02091467",
    "n02097130",
    "n02099601",
    "n02101388",
    "n02101556",
    "n02102177",
    "n02105056",
    "n02105412",
    "n02105855",
    "n02107142",
    "n02110958",
    "n02112137",
]
IMAGENET_SUBSET_SIZE = 224
TINY_SIZE = 64
TINY_FOLDER = "tiny-imagenet-200"
IMAGENET_URL = "https://image-net.org/download.php"
TINY_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
SPLIT_FOLDERS = {"train": "train", "test": "val"}


def images_in(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted."""
    return sorted(
        Path(entry.path) for entry in os.scandir(folder) if is_image_file(Path(entry.name))
    )


def class_tree(
    title: str, folder: Path, wnids: list[str], inner: str = ""
) -> tuple[list[Path], list[int]]:
    """Paths and labels from ``folder/<wnid>/<inner>/*``; a UserError naming missing wnid dirs."""
    missing = [wnid for wnid in wnids if not (folder / wnid / inner).is_dir()]
    if missing:
        shown = " ".join(missing[:10]) + (
            f" ... ({len(missing)} in all)" if len(missing) > 10 else ""
        )
        raise UserError(
            f"{title}: class folders missing under {folder}: {shown}; "
            f"expected {folder}/<wnid>/{inner + '/' if inner else ''}*.JPEG for every class"
        )
    paths: list[Path] = []
    labels: list[int] = []
    for label, wnid in enumerate(wnids):
        found = images_in(folder / wnid / inner)
        if not found:
            raise UserError(f"{title}: no images in {folder / wnid / inner}")
        paths.extend(found)
        labels.extend([label] * len(found))
    return paths, labels


def build_imagenet_subset(
    name: str,
    title: str,
    wnids: list[str],
    root: Path | None,
    split: str,
    image_size: int | None,
    download: bool,
) -> FileImageDataset:
    """An ImageNet subset restricted to ``wnids`` (labels in that order), decoded lazily."""
    fix = f"get ImageNet from {IMAGENET_URL} and pass --data-root DIR, the folder holding train/"
    no_download(title, download, fix)
    root = require_root(root, title, "the ImageNet folder holding train/<wnid>/", fix)
    paths: list[Path] = []
    labels: list[int] = []
    for part in split.split("+"):
        folder = root / SPLIT_FOLDERS[part]
        if not folder.is_dir():
            raise not_found(title, f"{folder}/<wnid>/*.JPEG", fix)
        part_paths, part_labels = class_tree(title, folder, wnids)
        paths += part_paths
        labels += part_labels
    return FileImageDataset(
        name,
        paths,
        image_size or IMAGENET_SUBSET_SIZE,
        labels=np.array(labels),
        class_names=list(wnids),
    )


def build_imagenet10(
    root: Path | None, split: str, image_size: int | None, download: bool
) -> FileImageDataset:
    """ImageNet-10 (10 classes, ~13,000 train images), 224 px by default."""
    return build_imagenet_subset(
        "imagenet10", "ImageNet-10", IMAGENET10_WNIDS, root, split, image_size, download
    )


def build_imagenet_dogs(
    root: Path | None, split: str, image_size: int | None, download: bool
) -> FileImageDataset:
    """ImageNet-Dogs (15 dog breeds, ~19,500 train images), 224 px by default."""
    return build_imagenet_subset(
        "imagenet-dogs", "ImageNet-Dogs", IMAGENET_DOGS_WNIDS, root, split, image_size, download
    )


def tiny_wnids(folder: Path) -> list[str]:
    """The 200 class ids, sorted (ImageFolder order): from wnids.txt, else the train folders."""
    listing = folder / "wnids.txt"
    if listing.exists():
        return sorted(line.strip() for line in listing.read_text().splitlines() if line.strip())
    train = folder / "train"
    return sorted(entry.name for entry in os.scandir(train) if entry.is_dir())


def tiny_val(folder: Path, wnids: list[str]) -> tuple[list[Path], list[int]]:
    """Validation images labelled by ``val_annotations.txt`` (file<TAB>wnid<TAB>box...)."""
    annotations = folder / "val" / "val_annotations.txt"
    if not annotations.exists():
        raise not_found("Tiny-ImageNet", annotations, f"download it again from {TINY_URL}")
    index = {wnid: label for label, wnid in enumerate(wnids)}
    rows = [line.split("\t") for line in annotations.read_text().splitlines() if line.strip()]
    try:
        pairs = sorted((row[0], index[row[1]]) for row in rows)
    except (IndexError, KeyError) as error:
        raise UserError(f"{annotations}: unexpected line or class {error}") from None
    return [folder / "val" / "images" / name for name, _ in pairs], [label for _, label in pairs]


def build_tiny_imagenet(
    root: Path | None, split: str, image_size: int | None, download: bool
) -> FileImageDataset:
    """Tiny-ImageNet: 200 classes, 100,000 train / 10,000 val ("test") images, 64 px."""
    fix = (
        f"download {TINY_URL}, unzip it and pass --data-root DIR, the folder holding {TINY_FOLDER}"
    )
    no_download("Tiny-ImageNet", download, fix)
    root = require_root(root, "Tiny-ImageNet", f"the folder holding {TINY_FOLDER}", fix)
    folder = locate_folder(root, TINY_FOLDER, "train")
    if not (folder / "train").is_dir():
        raise not_found("Tiny-ImageNet", f"{folder}/train/<wnid>/images/*.JPEG", fix)
    wnids = tiny_wnids(folder)
    paths: list[Path] = []
    labels: list[int] = []
    for part in split.split("+"):
        if part == "train":
            part_paths, part_labels = class_tree("Tiny-ImageNet", folder / "train", wnids, "images")
        else:
            part_paths, part_labels = tiny_val(folder, wnids)
        paths += part_paths
        labels += part_labels
    return FileImageDataset(
        "tiny-imagenet",
        paths,
        image_size or TINY_SIZE,
        labels=np.array(labels),
        class_names=wnids,
    )
