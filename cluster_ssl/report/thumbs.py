"""``thumbs/NNNNN.jpg``: one small picture per image, for the page's gallery (written once)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from cluster_ssl.data.base import ImageDataset

#: the longest side of a thumbnail
THUMB = 64
#: digits of a thumbnail's number (more are used past 99,999 images)
DIGITS = 5
MANIFEST = "manifest.json"


def thumb_name(index: int) -> str:
    return f"{index:0{DIGITS}d}.jpg"


def _fit(picture: Image.Image) -> Image.Image:
    """At most THUMB px on the long side; small images enlarged by whole steps, sharp."""
    picture = picture.convert("L" if picture.mode in ("L", "1", "I", "I;16", "F") else "RGB")
    width, height = picture.size
    if max(width, height) > THUMB:
        picture.thumbnail((THUMB, THUMB), Image.Resampling.LANCZOS)
    elif max(width, height) * 2 <= THUMB:
        scale = THUMB // max(width, height)
        picture = picture.resize((width * scale, height * scale), Image.Resampling.NEAREST)
    return picture


def _from_dataset(dataset: ImageDataset, index: int) -> Image.Image | None:
    image = dataset[index]["image"]
    array = image.numpy() if hasattr(image, "numpy") else np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or min(array.shape[1:]) < 2:
        return None  # feature vectors, not pictures
    pixels = array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)
    return Image.fromarray(np.ascontiguousarray(pixels), "L" if array.shape[0] == 1 else "RGB")


def _picture(dataset: ImageDataset, paths: Sequence | None, index: int) -> Image.Image | None:
    if paths is not None:  # the file itself: sharper than the network's input
        try:
            with Image.open(paths[index]) as opened:
                opened.draft("RGB", (THUMB, THUMB))
                return _fit(ImageOps.exif_transpose(opened))
        except Exception:  # noqa: BLE001 - any unreadable file falls back to the dataset
            pass
    picture = _from_dataset(dataset, index)
    return None if picture is None else _fit(picture)


def write_thumbnails(folder: Path, dataset: ImageDataset, names: Sequence[str]) -> bool:
    """Write ``folder/NNNNN.jpg`` for every sample, unless a manifest shows the same images
    were already written there. False (nothing written) for datasets of feature vectors."""
    if len(dataset) == 0 or _from_dataset(dataset, 0) is None:
        return False
    key = hashlib.sha1("\n".join(names).encode(errors="surrogateescape")).hexdigest()
    manifest = folder / MANIFEST
    try:
        if json.loads(manifest.read_text()) == {"count": len(names), "names_sha1": key}:
            return True
    except (OSError, ValueError):
        pass
    folder.mkdir(parents=True, exist_ok=True)
    manifest.unlink(missing_ok=True)
    paths = getattr(dataset, "paths", None)

    def one(index: int) -> None:
        picture = _picture(dataset, paths, index)
        if picture is None:
            picture = Image.new("L", (THUMB, THUMB), 200)
        picture.save(folder / thumb_name(index), format="JPEG", quality=85)

    if paths is not None:
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            list(pool.map(one, range(len(dataset))))
    else:
        for index in range(len(dataset)):
            one(index)
    manifest.write_text(json.dumps({"count": len(names), "names_sha1": key}))
    return True
