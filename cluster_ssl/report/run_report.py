"""A whole report directory from a prediction: CSV, grids, map, page (and, with labels, the
clusters matched to classes)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cluster_ssl.cluster.prediction import Prediction
from cluster_ssl.data.base import ImageDataset
from cluster_ssl.report.assignments import write_assignments
from cluster_ssl.report.confusion import confusion
from cluster_ssl.report.embedding_map import write_embedding_map
from cluster_ssl.report.grids import write_cluster_grids
from cluster_ssl.report.page import ReportContent, cluster_summary, write_report


def sample_names(dataset: ImageDataset, root: Path | None = None) -> list[str]:
    """What the CSV calls each sample: its file (relative to ``root``), else ``name[i]``."""
    paths = getattr(dataset, "paths", None)
    if paths is None:
        return [f"{dataset.name}[{i}]" for i in range(len(dataset))]
    return [(Path(p).relative_to(root) if root else Path(p)).as_posix() for p in paths]


def write_report_dir(
    out: Path,
    dataset: ImageDataset,
    prediction: Prediction,
    title: str,
    facts: dict[str, str],
    names: Sequence[str],
    extra_links: dict[str, str] | None = None,
) -> None:
    """``assignments.csv``, ``clusters/NN.png``, ``embedding.png`` and ``report.html`` in
    ``out``; when ``dataset`` has labels, the page adds the confusion matrix and per-class
    accuracy."""
    labels, scores, k = prediction.labels, prediction.confidence, prediction.num_clusters
    write_assignments(out / "assignments.csv", names, labels, scores)
    grids = write_cluster_grids(out / "clusters", dataset, labels, scores, k)
    map_method = None
    if prediction.embedding is not None and len(labels) > 3:
        map_method = write_embedding_map(out / "embedding.png", prediction.embedding, labels)
    sizes, means = cluster_summary(labels, scores, k)
    matched = None
    if dataset.labels is not None and (dataset.labels >= 0).any():
        matched = confusion(dataset.labels, labels, k, dataset.class_names)
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
        ),
    )
