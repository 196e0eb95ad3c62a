"""``report.html``: one page, opened from disk without a server, showing a clustering.

The page is static HTML plus one inline script (:mod:`cluster_ssl.report.page_script`) that
reads the data embedded as JSON (``<script type="application/json" id="report-data">``):
compact arrays (names, clusters, confidences, map coordinates), never per-image HTML, so a
page for 100,000 images stays small and opens fast; thumbnails are files next to it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from cluster_ssl.report.confusion import Confusion
from cluster_ssl.report.embedding_map import PALETTE
from cluster_ssl.report.page_script import SCRIPT, STYLE
from cluster_ssl.report.quality import (
    K_MARGIN,
    LOW_CONFIDENCE,
    MIXED_RULE,
    ClusterQuality,
    k_warning,
)
from cluster_ssl.runtime.files import write_bytes


@dataclass
class ReportContent:
    """What the page shows; image paths are relative to the page.

    ``gallery`` is the data of the interactive parts (see :func:`gallery_data`); without it
    the page is the static table of grids. ``k_scores`` is the score of every k that
    ``--k auto`` tried."""

    title: str
    facts: dict[str, str]
    sizes: list[int]
    mean_confidence: list[float | None]
    grids: list[str | None]
    embedding_map: str | None
    map_method: str | None
    links: dict[str, str]
    confusion: Confusion | None = None
    quality: list[ClusterQuality] | None = None
    gallery: dict[str, Any] | None = None
    k_scores: dict[int, float] | None = None


def cluster_summary(
    labels: np.ndarray, confidence: np.ndarray | None, num_clusters: int
) -> tuple[list[int], list[float | None]]:
    """Each cluster's size and mean confidence (None when empty or without confidence)."""
    sizes = np.bincount(labels, minlength=num_clusters).tolist()
    means: list[float | None] = []
    for cluster in range(num_clusters):
        members = labels == cluster
        has = confidence is not None and bool(members.any())
        means.append(float(confidence[members].mean()) if has else None)
    return sizes, means


def colour(cluster: int) -> str:
    red, green, blue = PALETTE[cluster % len(PALETTE)]
    return f"#{red:02x}{green:02x}{blue:02x}"


def gallery_data(
    names: list[str],
    labels: np.ndarray,
    confidence: np.ndarray | None,
    num_clusters: int,
    thumbs: str | None,
    sources: tuple[str, list[str] | None] | None = None,
    map_index: np.ndarray | None = None,
    map_points: np.ndarray | None = None,
    map_method: str | None = None,
) -> dict[str, Any]:
    """The page's JSON: per image its name, cluster and confidence (4 decimals); the
    thumbnail folder (``thumbs/NNNNN.jpg``) or None; ``sources`` = (base URL, paths
    relative to it, or None when they are the names) of the full-size files; the mapped
    samples' indices and coordinates scaled to 0..1."""
    data: dict[str, Any] = {
        "k": num_clusters,
        "names": [str(name) for name in names],
        "labels": [int(label) for label in labels],
        "conf": None if confidence is None else np.round(confidence, 4).tolist(),
        "thumbs": thumbs,
        "src": None if sources is None else {"base": sources[0], "rel": sources[1]},
        "palette": [colour(c) for c in range(len(PALETTE))],
        "low": LOW_CONFIDENCE,
        "map": None,
    }
    if map_index is not None and map_points is not None and len(map_index):
        low, high = map_points.min(axis=0), map_points.max(axis=0)
        scaled = (map_points - low) / np.where(high > low, high - low, 1.0)
        data["map"] = {
            "idx": [int(i) for i in map_index],
            "x": np.round(scaled[:, 0], 4).tolist(),
            "y": np.round(scaled[:, 1], 4).tolist(),
            "method": map_method,
        }
    return data


def embed_json(data: Any) -> str:
    """JSON safe inside a ``<script>`` element (no ``</``, ASCII only)."""
    return json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


def render_confusion(table: Confusion) -> str:
    """Classes down, clusters across (matched order), per-class accuracy at the right."""
    head = "".join(f"<th>{cluster}</th>" for cluster in table.clusters)
    rows = []
    for name, counts, accuracy in zip(table.classes, table.counts, table.per_class, strict=True):
        cells = "".join(
            f"<td style='background: rgba(76,120,168,{count / max(counts.sum(), 1):.2f})'>"
            f"{count}</td>"
            for count in counts
        )
        rows.append(f"<tr><th>{escape(name)}</th>{cells}<td>{accuracy:.3f}</td></tr>")
    return (
        "<h2>Clusters matched to classes</h2><p>Rows are classes, columns clusters in the "
        "order of the one-to-one (Hungarian) matching; the last column is the share of each "
        f"class in its matched cluster.</p><table><tr><th>class / cluster</th>{head}"
        f"<th>accuracy</th></tr>{''.join(rows)}</table>"
    )


def _number(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:.0%}" if percent else f"{value:.3f}"


def render_clusters(content: ReportContent) -> str:
    """The table of clusters: quality numbers, the mixed flag, a name box, merge boxes."""
    quality = content.quality or [
        ClusterQuality(size, mean, None, None, False, "")
        for size, mean in zip(content.sizes, content.mean_confidence, strict=True)
    ]
    largest = max(content.sizes, default=0) or 1
    rows = []
    for cluster, (q, grid) in enumerate(zip(quality, content.grids, strict=True)):
        width = int(120 * q.size / largest)
        picture = f'<a href="{escape(grid)}">grid</a>' if grid else "(empty)"
        flag = f"<span class='mixed' title='{escape(q.why)}'>looks mixed</span>" if q.mixed else ""
        rows.append(
            f"<tr data-cluster='{cluster}' class='{'empty' if not q.size else ''}'>"
            f"<td><input type='checkbox' class='merge-box' data-cluster='{cluster}' "
            f"title='select to merge'></td>"
            f"<td class='pick'><span class='swatch' style='background: {colour(cluster)}'>"
            f"</span><b>{cluster}</b></td>"
            f"<td><input class='name-box' data-cluster='{cluster}' size='12' "
            f"placeholder='name…'></td>"
            f"<td>{q.size}<div class='bar' style='width: {width}px'></div></td>"
            f"<td>{_number(q.mean_confidence)}</td><td>{_number(q.low_share, True)}</td>"
            f"<td>{_number(q.silhouette)}</td><td>{flag}</td><td>{picture}</td></tr>"
        )
    return (
        "<h2>Clusters</h2>"
        f"<p class='note'>Click a cluster to browse it. <b>Looks mixed</b>: {escape(MIXED_RULE)}"
        " (silhouette: cosine, on the embedding, on at most 5,000 sampled images; 1 is "
        "tight and apart, near 0 overlapping). Name clusters and tick clusters to merge, "
        "then save the names file for <code>cluster-ssl export --names</code>.</p>"
        "<div class='tools'><button id='merge-button'>merge ticked clusters</button> "
        "<button id='save-names'>save names &amp; merges (JSON)</button> "
        "<span id='merges'></span></div>"
        "<table id='clusters'><tr><th>merge</th><th>cluster</th><th>name</th><th>images</th>"
        f"<th>mean confidence</th><th>below {LOW_CONFIDENCE} confidence</th>"
        "<th>silhouette</th><th>flag</th><th>grid</th></tr>"
        f"{''.join(rows)}</table>"
    )


def render_k_scores(scores: dict[int, float]) -> str:
    warning = k_warning(scores)
    note = (
        f"<p class='warning'>⚠ {escape(warning)}</p>"
        if warning
        else f"<p class='note'>The chosen k beats every other k by at least {K_MARGIN}.</p>"
    )
    data = embed_json({str(k): float(v) for k, v in sorted(scores.items())})
    return (
        "<h2>Choosing k</h2><p class='note'>Mean silhouette of k-means on the embedding "
        "for every k tried (higher is better).</p>"
        f"{note}<canvas id='k-curve' width='480' height='200'></canvas>"
        f"<script type='application/json' id='k-data'>{data}</script>"
    )


def render(content: ReportContent) -> str:
    """The page's HTML."""
    facts = "".join(
        f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in content.facts.items()
    )
    links = " · ".join(
        f'<a href="{escape(href)}">{escape(name)}</a>' for name, href in content.links.items()
    )
    files = [f'<a href="{escape(g)}">{escape(g)}</a>' for g in content.grids if g]
    if content.embedding_map:
        files.append(
            f'<a href="{escape(content.embedding_map)}">{escape(content.embedding_map)}</a>'
        )
    k_part = render_k_scores(content.k_scores) if content.k_scores else ""
    interactive = ""
    if content.gallery is not None:
        method = (content.gallery.get("map") or {}).get("method") or content.map_method or ""
        mapped = ""
        if content.gallery.get("map"):
            mapped = (
                f"<h2>Map of the embedding ({escape(method)})</h2><p class='note'>Each dot is "
                "an image (at most 5,000 sampled), coloured by cluster; hover for the image, "
                "click a dot or a legend entry to show its cluster below.</p>"
                "<div class='map-row'><canvas id='map' width='640' height='640'></canvas>"
                "<div id='legend'></div></div>"
            )
        interactive = (
            "<h2>Confidence</h2><p class='note'>How sure the method is of each image's "
            "cluster (grey: all images; colour: the cluster shown).</p>"
            "<canvas id='histogram' width='480' height='160'></canvas>"
            f"{mapped}<h2 id='gallery-title'>Images</h2><div id='gallery-bar'></div>"
            "<div id='gallery'></div>"
            "<div id='overlay' hidden><figure><img id='overlay-img' alt=''>"
            "<figcaption id='overlay-caption'></figcaption></figure></div>"
            "<div id='tooltip' hidden></div><pre id='selftest' hidden></pre>"
            f"<script type='application/json' id='report-data'>{embed_json(content.gallery)}"
            f"</script><script>{SCRIPT}</script>"
        )
    elif content.embedding_map:
        interactive = (
            f"<h2>Embedding ({escape(content.map_method or '')}, coloured by cluster)</h2>"
            f'<img src="{escape(content.embedding_map)}" alt="embedding map">'
        )
    matched = render_confusion(content.confusion) if content.confusion else ""
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{escape(content.title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{escape(content.title)}</h1><table>{facts}</table><p>{links}</p>"
        f"{k_part}{render_clusters(content)}{matched}{interactive}"
        f"<h2>Files</h2><p class='note'>{' · '.join(files) or 'none'}</p></body></html>\n"
    )


def write_report(path: Path, content: ReportContent) -> None:
    write_bytes(render(content).encode(errors="replace"), path)
