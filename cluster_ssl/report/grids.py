"""``clusters/NN.png``: the most confident images of each cluster, tiled."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from PIL import Image

from cluster_ssl.data.base import ImageDataset
from cluster_ssl.runtime.files import write_bytes

#: smallest side of a tile: tiny images (8 px digits) are enlarged to be seen
MIN_TILE = 48
PADDING = 2


def most_confident(labels: np.ndarray, confidence: np.ndarray | None, cluster: int, count: int):
    """Indices of up to ``count`` members of ``cluster``, most confident first (dataset
    order when there is no confidence)."""
    members = np.flatnonzero(labels == cluster)
    if confidence is not None:
        members = members[np.argsort(-confidence[members], kind="stable")]
    return members[:count]


def tile(images: list[np.ndarray], columns: int) -> Image.Image:
    """uint8 (C, H, W) images on a white grid, ``columns`` wide, each at least MIN_TILE px."""
    channels, height, width = images[0].shape
    scale = max(1, math.ceil(MIN_TILE / max(height, width)))
    cell_h, cell_w = height * scale + PADDING, width * scale + PADDING
    rows = math.ceil(len(images) / columns)
    mode = "L" if channels == 1 else "RGB"
    white = 255 if mode == "L" else (255, 255, 255)
    sheet = Image.new(mode, (columns * cell_w + PADDING, rows * cell_h + PADDING), white)
    for i, image in enumerate(images):
        pixels = image[0] if channels == 1 else image.transpose(1, 2, 0)
        picture = Image.fromarray(np.ascontiguousarray(pixels), mode)
        picture = picture.resize((width * scale, height * scale), Image.Resampling.NEAREST)
        row, column = divmod(i, columns)
        sheet.paste(picture, (PADDING + column * cell_w, PADDING + row * cell_h))
    return sheet


def write_cluster_grids(
    out_dir: Path,
    dataset: ImageDataset,
    labels: np.ndarray,
    confidence: np.ndarray | None,
    num_clusters: int,
    per_cluster: int = 25,
) -> list[Path | None]:
    """One PNG per non-empty cluster (``NN.png``); None for an empty cluster. Decodes only
    the images shown."""
    columns = max(1, math.isqrt(per_cluster))
    written: list[Path | None] = []
    for cluster in range(num_clusters):
        chosen = most_confident(labels, confidence, cluster, per_cluster)
        if len(chosen) == 0:
            written.append(None)
            continue
        images = [dataset[int(i)]["image"].numpy() for i in chosen]
        buffer = io.BytesIO()
        tile(images, columns).save(buffer, format="PNG")
        path = out_dir / f"{cluster:02d}.png"
        write_bytes(buffer.getvalue(), path)
        written.append(path)
    return written
