"""``report.html``: one page, opened from disk without a server, showing a clustering."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from pathlib import Path

import numpy as np

from cluster_ssl.report.confusion import Confusion
from cluster_ssl.report.embedding_map import PALETTE
from cluster_ssl.runtime.files import write_bytes


@dataclass
class ReportContent:
    """What the page shows; image paths are relative to the page."""

    title: str
    facts: dict[str, str]
    sizes: list[int]
    mean_confidence: list[float | None]
    grids: list[str | None]
    embedding_map: str | None
    map_method: str | None
    links: dict[str, str]
    confusion: Confusion | None = None


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


STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; }
td, th { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
.swatch { display: inline-block; width: 12px; height: 12px; margin-right: 6px; }
.bar { background: #4c78a8; height: 10px; }
img { image-rendering: pixelated; max-width: 100%; }
"""


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


def render(content: ReportContent) -> str:
    """The page's HTML."""
    facts = "".join(
        f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in content.facts.items()
    )
    links = " · ".join(
        f'<a href="{escape(href)}">{escape(name)}</a>' for name, href in content.links.items()
    )
    largest = max(content.sizes) or 1
    rows = []
    for cluster, size in enumerate(content.sizes):
        red, green, blue = PALETTE[cluster % len(PALETTE)]
        mean = content.mean_confidence[cluster]
        grid = content.grids[cluster]
        picture = f'<img src="{escape(grid)}" alt="cluster {cluster}">' if grid else "(empty)"
        width = int(200 * size / largest)
        rows.append(
            f"<tr><td><span class='swatch' style='background: rgb({red},{green},{blue})'>"
            f"</span>{cluster}</td><td>{size}<div class='bar' style='width: {width}px'></div>"
            f"</td><td>{'' if mean is None else f'{mean:.3f}'}</td><td>{picture}</td></tr>"
        )
    embedding = ""
    if content.embedding_map:
        embedding = (
            f"<h2>Embedding ({escape(content.map_method or '')}, coloured by cluster)</h2>"
            f'<img src="{escape(content.embedding_map)}" alt="embedding map">'
        )
    matched = render_confusion(content.confusion) if content.confusion else ""
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{escape(content.title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{escape(content.title)}</h1><table>{facts}</table><p>{links}</p>"
        "<h2>Clusters</h2><table><tr><th>cluster</th><th>images</th>"
        "<th>mean confidence</th><th>most confident images</th></tr>"
        f"{''.join(rows)}</table>{matched}{embedding}</body></html>\n"
    )


def write_report(path: Path, content: ReportContent) -> None:
    write_bytes(render(content).encode(errors="replace"), path)
