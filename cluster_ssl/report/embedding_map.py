"""``embedding.png``: a 2-D map of the learned embedding, one colour per cluster."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cluster_ssl.runtime.files import write_bytes

#: points drawn at most (a seeded subsample above this keeps t-SNE to seconds)
MAX_POINTS = 5000
SIDE = 800
MARGIN = 20
#: 20 distinguishable colours (Tableau 20); more clusters cycle through them
PALETTE = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
    (174, 199, 232), (255, 187, 120), (152, 223, 138), (255, 152, 150), (197, 176, 213),
    (196, 156, 148), (247, 182, 210), (199, 199, 199), (219, 219, 141), (158, 218, 229),
]  # fmt: skip


def project_2d(embedding: np.ndarray, seed: int = 0) -> tuple[np.ndarray, str]:
    """(N, 2) coordinates and the method's name: UMAP when ``umap-learn`` is installed,
    else t-SNE (scikit-learn, PCA initialisation, perplexity below N / 3)."""
    try:
        import umap
    except ImportError:
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, max(2.0, (len(embedding) - 1) / 3)))
        tsne = TSNE(2, perplexity=perplexity, init="pca", random_state=seed)
        return tsne.fit_transform(embedding), "t-SNE"
    return umap.UMAP(random_state=seed).fit_transform(embedding), "UMAP"


def draw_map(points: np.ndarray, labels: np.ndarray) -> Image.Image:
    """Points scaled into a white square, each a dot in its cluster's colour."""
    image = Image.new("RGB", (SIDE, SIDE), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    low, high = points.min(axis=0), points.max(axis=0)
    scaled = (points - low) / np.where(high > low, high - low, 1.0) * (SIDE - 2 * MARGIN) + MARGIN
    for (x, y), label in zip(scaled, labels, strict=True):
        colour = PALETTE[int(label) % len(PALETTE)]
        draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=colour)
    return image


def map_points(embedding: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """The samples mapped (sorted indices, at most :data:`MAX_POINTS`, seeded), their 2-D
    coordinates and the projection's name."""
    rng = np.random.default_rng(seed)
    keep = np.arange(len(embedding))
    if len(keep) > MAX_POINTS:
        keep = np.sort(rng.choice(len(keep), MAX_POINTS, replace=False))
    points, method = project_2d(np.asarray(embedding, dtype=np.float32)[keep], seed)
    return keep, np.asarray(points, dtype=np.float64), method


def save_map(path: Path, points: np.ndarray, labels: np.ndarray) -> None:
    """The static PNG of :func:`draw_map`."""
    buffer = io.BytesIO()
    draw_map(points, labels).save(buffer, format="PNG")
    write_bytes(buffer.getvalue(), path)


def write_embedding_map(
    path: Path, embedding: np.ndarray, labels: np.ndarray, seed: int = 0
) -> str:
    """Draw the map of up to :data:`MAX_POINTS` samples to ``path``; returns the method."""
    keep, points, method = map_points(embedding, seed)
    save_map(path, points, labels[keep])
    return method
