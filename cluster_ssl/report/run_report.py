"""A whole report directory from a prediction: CSV, thumbnails, grids, map, page (and, with
labels, the clusters matched to classes)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from cluster_ssl.cluster.prediction import Prediction
from cluster_ssl.data.base import ImageDataset
from cluster_ssl.report.assignments import write_assignments
from cluster_ssl.report.confusion import confusion
from cluster_ssl.report.embedding_map import map_points, save_map
from cluster_ssl.report.grids import write_cluster_grids
from cluster_ssl.report.page import ReportContent, cluster_summary, gallery_data, write_report
from cluster_ssl.report.quality import cluster_quality, cluster_silhouettes
from cluster_ssl.report.thumbs import write_thumbnails


def sample_names(dataset: ImageDataset, root: Path | None = None) -> list[str]:
    """What the CSV calls each sample: its file (relative to ``root``), else ``name[i]``."""
    paths = getattr(dataset, "paths", None)
    if paths is None:
        return [f"{dataset.name}[{i}]" for i in range(len(dataset))]
    return [(Path(p).relative_to(root) if root else Path(p)).as_posix() for p in paths]


def file_sources(
    dataset: ImageDataset, names: Sequence[str]
) -> tuple[str, list[str] | None] | None:
    """Where the page finds each full-size file: a ``file://`` base and the paths relative
    to it (None when those are ``names``); None for datasets without files."""
    paths = getattr(dataset, "paths", None)
    if not paths:
        return None
    absolute = [Path(p).resolve() for p in paths]
    base = Path(os.path.commonpath([p.parent for p in absolute]))
    relative = [p.relative_to(base).as_posix() for p in absolute]
    return base.as_uri().rstrip("/") + "/", None if relative == list(names) else relative


def write_report_dir(
    out: Path,
    dataset: ImageDataset,
    prediction: Prediction,
    title: str,
    facts: dict[str, str],
    names: Sequence[str],
    extra_links: dict[str, str] | None = None,
    k_scores: Mapping[int | str, float] | None = None,
) -> None:
    """``assignments.csv``, ``thumbs/``, ``clusters/NN.png``, ``embedding.png`` and
    ``report.html`` in ``out``; when ``dataset`` has labels, the page adds the confusion
    matrix and per-class accuracy. ``k_scores`` (k -> score of every k ``--k auto``
    tried) adds the curve and a warning when the best k is not clearly better."""
    out = Path(out)
    labels, scores, k = prediction.labels, prediction.confidence, prediction.num_clusters
    labels = np.asarray(labels)
    write_assignments(out / "assignments.csv", names, labels, scores)
    grids = write_cluster_grids(out / "clusters", dataset, labels, scores, k)
    has_thumbs = write_thumbnails(out / "thumbs", dataset, names)
    map_method = keep = points = None
    silhouettes = None
    if prediction.embedding is not None and len(labels) > 3:
        keep, points, map_method = map_points(prediction.embedding)
        save_map(out / "embedding.png", points, labels[keep])
        embedding = np.asarray(prediction.embedding, dtype=np.float32)[keep]
        silhouettes = cluster_silhouettes(embedding, labels[keep], k)
    sizes, means = cluster_summary(labels, scores, k)
    matched = None
    if dataset.labels is not None and (dataset.labels >= 0).any():
        matched = confusion(dataset.labels, labels, k, dataset.class_names)
    gallery = gallery_data(
        list(names),
        labels,
        None if scores is None else np.asarray(scores, dtype=np.float64),
        k,
        "thumbs/" if has_thumbs else None,
        file_sources(dataset, names),
        keep,
        points,
        map_method,
    )
    write_report(
        out / "report.html",
        ReportContent(
            title=title,
            facts={**facts, "clusters used": f"{sum(size > 0 for size in sizes)} of {k}"},
            sizes=sizes,
            mean_confidence=means,
            grids=[None if g is None else g.relative_to(out).as_posix() for g in grids],
            embedding_map="embedding.png" if map_method else None,
            map_method=map_method,
            links={"assignments.csv": "assignments.csv", **(extra_links or {})},
            confusion=matched,
            quality=cluster_quality(labels, scores, k, silhouettes),
            gallery=gallery,
            k_scores=None if not k_scores else {int(key): float(v) for key, v in k_scores.items()},
        ),
    )
