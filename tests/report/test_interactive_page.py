"""The interactive report: quality numbers, the k warning, thumbnails written once, the
embedded data, and (with Chromium) the page's own self-check in a headless browser."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from cluster_ssl.report.page import embed_json
from cluster_ssl.report.quality import cluster_quality, cluster_silhouettes, k_warning
from tests.report.demo import digits_report

CHROMIUM = Path("/usr/bin/chromium")


def test_mixed_flag_follows_silhouette_and_low_confidence_share():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
    confidence = np.array([0.9, 0.9, 0.9, 0.4, 0.3, 0.4, 0.9, 0.9, 0.9, 0.9])
    quality = cluster_quality(labels, confidence, 4, [0.6, 0.5, 0.01, None])
    assert [q.size for q in quality] == [4, 4, 2, 0]
    assert quality[0].low_share == 0.25 and not quality[0].mixed
    assert quality[1].low_share == 0.5 and quality[1].mixed and "50%" in quality[1].why
    assert quality[2].mixed and "silhouette" in quality[2].why  # confident but overlapping
    assert not quality[3].mixed and quality[3].mean_confidence is None


def test_clusters_are_also_judged_against_the_runs_own():
    """The ten clusters of 3,000 Fashion-MNIST PNGs clustered by CC (docs/RESULTS.md):
    (share below 0.5 confidence, silhouette, majority-class share from the labels)."""
    clusters = [
        (0.08, 0.284, 0.59),
        (0.01, 0.664, 0.85),
        (0.10, 0.377, 0.33),
        (0.00, 0.805, 0.97),
        (0.06, 0.629, 0.39),
        (0.02, 0.591, 0.69),
        (0.12, 0.309, 0.53),
        (0.06, 0.751, 0.87),
        (0.11, 0.499, 0.30),
        (0.03, 0.512, 0.96),
    ]
    labels = np.repeat(np.arange(10), 100)
    confidence = np.concatenate(
        [
            np.r_[np.full(round(low * 100), 0.3), np.full(100 - round(low * 100), 0.9)]
            for low, _, _ in clusters
        ]
    )
    quality = cluster_quality(labels, confidence, 10, [sil for _, sil, _ in clusters])
    flagged = {c for c, q in enumerate(quality) if q.mixed}
    mixed = {c for c, (_, _, majority) in enumerate(clusters) if majority < 0.6}
    assert flagged == {0, 2, 6, 8} and flagged <= mixed  # cluster 4 looks as tight as a pure one
    assert "median" in quality[8].why and "median" in quality[0].why


def test_a_run_of_clean_clusters_gets_no_relative_flags():
    labels = np.repeat(np.arange(4), 50)
    confidence = np.concatenate(
        [np.r_[np.full(k, 0.3), np.full(50 - k, 0.95)] for k in (0, 0, 1, 2)]
    )
    quality = cluster_quality(labels, confidence, 4, [0.9, 0.85, 0.6, 0.55])
    assert not any(q.mixed for q in quality)  # 4% below 0.5 and silhouettes above 0.5


def test_silhouettes_separate_tight_clusters_from_overlapping_ones():
    rng = np.random.default_rng(0)
    apart = np.concatenate([rng.normal([5, 0], 0.1, (50, 2)), rng.normal([0, 5], 0.1, (50, 2))])
    labels = np.repeat([0, 1], 50)
    assert min(cluster_silhouettes(apart, labels, 3)[:2]) > 0.9
    assert cluster_silhouettes(apart, labels, 3)[2] is None
    shuffled = rng.permutation(labels)
    assert max(cluster_silhouettes(apart, shuffled, 2)) < 0.1


def test_k_warning_only_when_another_k_is_within_the_margin():
    assert k_warning({2: 0.30, 3: 0.45, 4: 0.40}) is None
    text = k_warning({2: 0.30, 3: 0.45, 4: 0.445})
    assert text is not None and "k = 3" in text and "k = 4" in text
    assert k_warning({5: 0.2}) is None


def test_embedded_json_cannot_close_its_script_element():
    text = embed_json({"names": ["</script><script>alert(1)</script>", "café"]})
    assert "</" not in text and json.loads(text)["names"][1] == "café"


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("digits")
    return digits_report(root, 300, k_scores={8: 0.15, 9: 0.158, 10: 0.162, 11: 0.14})


def test_the_page_embeds_data_and_thumbnails_are_written_once(report):
    page = (report / "report.html").read_text()
    assert "http://" not in page and "https://" not in page  # opens from disk, no network
    data = json.loads(
        re.search(r'id="report-data">(.*?)</script>', page.replace("'", '"')).group(1)
    )
    assert len(data["names"]) == len(data["labels"]) == len(data["conf"]) == 300
    assert data["thumbs"] == "thumbs/" and len(data["map"]["idx"]) == 300
    assert data["src"]["base"].startswith("file:///")
    thumbs = sorted((report / "thumbs").glob("*.jpg"))
    assert len(thumbs) == 300 and thumbs[0].name == "00000.jpg"
    assert "not clearly better" in page and "k-curve" in page
    before = thumbs[5].stat().st_mtime_ns
    time.sleep(0.01)
    digits_report(report.parent, 300)  # same images again: the thumbnails are kept
    assert thumbs[5].stat().st_mtime_ns == before


def _chromium(*args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    return subprocess.run(
        [str(CHROMIUM), *flags, "--enable-logging=stderr", "--v=0", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
def test_gallery_map_and_filter_work_in_a_browser(report, tmp_path):
    result = _chromium("--dump-dom", (report / "report.html").as_uri() + "#selftest")
    match = re.search(r'<pre id="selftest">(.*?)</pre>', result.stdout, re.S)
    assert match, result.stderr[-2000:]
    assert match.group(1).startswith("SELFTEST PASSED"), match.group(1)
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line]
    assert not [line for line in console if "rror" in line], console
    shot = tmp_path / "report.png"
    _chromium("--hide-scrollbars", "--window-size=1300,2400", f"--screenshot={shot}",
              (report / "report.html").as_uri() + "#cluster=0")  # fmt: skip
    assert shot.is_file() and shot.stat().st_size > 10_000
