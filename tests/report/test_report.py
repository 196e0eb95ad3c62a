"""Report pieces on hand-worked cases: clusters matched to classes, cluster summaries, the
most confident members, and the CSV."""

import os

import numpy as np
import pytest

from cluster_ssl.report.assignments import write_assignments, write_skipped
from cluster_ssl.report.confusion import confusion
from cluster_ssl.report.grids import most_confident
from cluster_ssl.report.page import ReportContent, cluster_summary, render, write_report


def test_confusion_orders_clusters_by_their_matched_class():
    y_true = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    y_pred = np.array([1, 1, 0, 0, 0, 2, 2, 1])
    # count matrix (cluster x class): c0 [1, 2, 0], c1 [2, 0, 1], c2 [0, 0, 2]; the best
    # one-to-one matching is c1 -> 0, c0 -> 1, c2 -> 2 (6 of 8)
    table = confusion(y_true, y_pred, 3, ["zero", "one", "two"])
    assert table.classes == ["zero", "one", "two"] and table.clusters == [1, 0, 2]
    assert table.counts.tolist() == [[2, 1, 0], [0, 2, 0], [1, 0, 2]]
    assert table.per_class == pytest.approx([2 / 3, 1.0, 2 / 3])


def test_a_collapsed_clustering_leaves_unmatched_classes_at_zero():
    table = confusion(np.array([0, 0, 1, 1, 2]), np.zeros(5, dtype=int), 3, None)
    assert table.clusters == [0, 1, 2] and table.per_class == [1.0, 0.0, 0.0]


def test_cluster_summary_and_most_confident_members():
    labels = np.array([0, 1, 0, 0, 2])
    confidence = np.array([0.5, 0.9, 0.8, 0.6, 0.7])
    sizes, means = cluster_summary(labels, confidence, 4)
    assert sizes == [3, 1, 1, 0]
    assert means[:3] == pytest.approx([(0.5 + 0.8 + 0.6) / 3, 0.9, 0.7]) and means[3] is None
    assert most_confident(labels, confidence, 0, 2).tolist() == [2, 3]
    assert most_confident(labels, None, 0, 5).tolist() == [0, 2, 3]


def test_assignments_csv_and_an_escaped_page(tmp_path):
    write_assignments(tmp_path / "a.csv", ["x/1.png", "y,2.png"], np.array([1, 0]), None)
    assert (tmp_path / "a.csv").read_text() == 'path,cluster,confidence\nx/1.png,1,\n"y,2.png",0,\n'
    page = render(
        ReportContent(
            title="<script>",
            facts={"folder": "a & b"},
            sizes=[1, 0],
            mean_confidence=[None, None],
            grids=["clusters/00.png", None],
            embedding_map=None,
            map_method=None,
            links={},
        )
    )
    assert "<script>" not in page and "&lt;script&gt;" in page and "a &amp; b" in page
    assert '"clusters/00.png"' in page and "(empty)" in page


def test_file_names_that_are_not_utf8_are_written_as_their_bytes(tmp_path):
    name = os.fsdecode(b"holiday/caf\xe9.png")  # Latin-1 bytes, as old cameras write them
    write_assignments(tmp_path / "a.csv", [name], np.array([2]), np.array([0.5]))
    assert (
        tmp_path / "a.csv"
    ).read_bytes() == b"path,cluster,confidence\nholiday/caf\xe9.png,2,0.500000\n"
    write_skipped(tmp_path / "s.txt", [(tmp_path / name, "truncated")], tmp_path)
    assert (tmp_path / "s.txt").read_bytes() == b"holiday/caf\xe9.png\ttruncated\n"
    content = ReportContent(
        title=name,
        facts={},
        sizes=[1],
        mean_confidence=[None],
        grids=[None],
        embedding_map=None,
        map_method=None,
        links={},
    )
    write_report(tmp_path / "r.html", content)
    assert "<title>holiday/caf?.png</title>" in (tmp_path / "r.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("channels", [1, 3])
def test_tiles_sit_on_white_and_are_enlarged(channels):
    from cluster_ssl.report.grids import MIN_TILE, PADDING, tile

    images = [np.zeros((channels, 8, 8), dtype=np.uint8) for _ in range(3)]
    sheet = np.asarray(tile(images, columns=2))
    scale = MIN_TILE // 8
    assert sheet.shape[:2] == (2 * (8 * scale + PADDING) + PADDING,) * 2
    assert (sheet[:PADDING] == 255).all()  # the border is white in every channel
    assert (sheet[PADDING : PADDING + 8 * scale, PADDING : PADDING + 8 * scale] == 0).all()
