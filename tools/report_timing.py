"""How long report.html takes to become usable in headless Chromium, for a report of N images.

    python tools/report_timing.py DIR [--n 20000] [--repeat 5] [--screenshot FILE]

``build`` writes a report of ``n`` synthetic images through the same writer as
``cluster-ssl cluster`` (``write_report_dir``: thumbnails, grids, map, page) from made-up
assignments, without training: seeded K-class images named like a photo library's files,
their labels with 10% reassigned, a confidence drawn per image, and an embedding of K Gaussian
blobs (mapped by t-SNE, or UMAP when installed, as a run's). ``measure`` opens a copy of
the page with one script appended after the page's own; inline scripts run in document
order, so that script runs once the page's script has built the gallery, the map, the
histogram and every handler, and it records ``performance.now()`` (milliseconds since
navigation start) there and after forcing the layout. ``--dump-dom`` prints the DOM after
the load event, from which the figures are read. Each open is also timed from outside (the
whole Chromium process, start-up included) beside an empty page's. With ``#selftest`` the
page's own check (gallery, map, filter, full list) runs first and is included in the time.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from cluster_ssl.cluster.prediction import Prediction
from cluster_ssl.data.common import tensor_dataset
from cluster_ssl.data.synthetic import make_synthetic
from cluster_ssl.report.run_report import write_report_dir

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
from tools.machine import cpu_model  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking")
TIMING_PAGE = "report.timing.html"
#: appended after the page's own script: what it records once that script has run
PROBE = (
    "<script>(function () {"
    "var built = performance.now(); void document.body.offsetHeight;"
    "var laid = performance.now(); var out = document.createElement('pre'); out.id = 'timing';"
    "var test = document.getElementById('selftest');"
    "out.textContent = JSON.stringify({built_ms: built, layout_ms: laid,"
    " selftest: test && !test.hidden ? test.textContent.split('\\n')[0] : null});"
    "document.body.appendChild(out); })();</script>"
)


def build(out: Path, n: int, k: int = 10, seed: int = 0) -> Path:
    """A report of ``n`` synthetic images in ``out`` (16 px colour pictures); its page."""
    rng = np.random.default_rng(seed)
    images, truth = make_synthetic(n, k, size=16, channels=3, seed=seed)
    dataset = tensor_dataset("synthetic", images, truth, None, None)
    labels = np.where(rng.random(n) < 0.1, rng.integers(0, k, n), truth)
    centres = rng.normal(0.0, 3.0, (k, 16))
    embedding = (centres[labels] + rng.normal(0.0, 1.0, (n, 16))).astype(np.float32)
    prediction = Prediction(
        labels=labels.astype(np.int64),
        num_clusters=k,
        confidence=rng.beta(5.0, 1.5, n),
        embedding=embedding,
    )
    write_report_dir(
        out,
        dataset,
        prediction,
        title=f"{n} synthetic images: {k} clusters",
        facts={"images clustered": str(n)},
        # names as long as a photo library's, so the page embeds as much as a real run's
        names=[f"album-{i % 40:02d}/IMG_{i:05d}.jpg" for i in range(n)],
    )
    return out / "report.html"


def timing_page(page: Path) -> Path:
    """A copy of ``page`` beside it (same relative links) with :data:`PROBE` appended."""
    html = page.read_text()
    head, body_end, tail = html.rpartition("</body>")
    if not body_end:
        raise ValueError(f"{page} has no </body>")
    copy = page.with_name(TIMING_PAGE)
    copy.write_text(head + PROBE + body_end + tail)
    return copy


def read_timing(dom: str) -> dict:
    """The figures the probe wrote into the dumped DOM."""
    match = re.search(r'<pre id="timing">(.*?)</pre>', dom, re.S)
    if match is None:
        raise ValueError("the page's probe did not run (no <pre id='timing'> in the DOM)")
    return json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def open_page(url: str, *extra: str) -> tuple[subprocess.CompletedProcess, float]:
    """Run headless Chromium on ``url``; the process and its wall time in seconds."""
    start = time.perf_counter()
    result = subprocess.run(
        [str(CHROMIUM), *FLAGS, *extra, url], capture_output=True, text=True, timeout=300
    )
    return result, time.perf_counter() - start


def measure(page: Path, repeat: int, selftest: bool = False) -> dict:
    """``repeat`` opens of the probed copy of ``page``: the probe's figures and wall times of
    each, with an empty page's wall time for the browser's own start-up."""
    url = timing_page(page).as_uri() + ("#selftest" if selftest else "")
    runs, walls, empty = [], [], []
    blank = page.with_name("empty.html")
    blank.write_text("<!DOCTYPE html><html><body></body></html>\n")
    for _ in range(repeat):
        result, seconds = open_page(url, "--dump-dom")
        runs.append(read_timing(result.stdout))
        walls.append(seconds)
        empty.append(open_page(blank.as_uri(), "--dump-dom")[1])
    return {
        "built_ms": [round(run["built_ms"]) for run in runs],
        "layout_ms": [round(run["layout_ms"]) for run in runs],
        "selftest": runs[-1]["selftest"],
        "chromium_s": [round(s, 2) for s in walls],
        "empty_page_chromium_s": [round(s, 2) for s in empty],
    }


def summary(name: str, figures: dict) -> str:
    def med(values: list[float]) -> float:
        return statistics.median(values)

    line = (
        f"{name}: page usable {med(figures['built_ms']) / 1000:.2f} s after navigation "
        f"(median; layout done {med(figures['layout_ms']) / 1000:.2f} s; runs "
        f"{figures['layout_ms']} ms); Chromium process {med(figures['chromium_s']):.2f} s "
        f"against {med(figures['empty_page_chromium_s']):.2f} s for an empty page"
    )
    return line + (f"; {figures['selftest']}" if figures["selftest"] else "")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder for the report")
    parser.add_argument("--n", type=int, default=20_000, help="images in the report")
    parser.add_argument("--repeat", type=int, default=5, help="opens to measure")
    parser.add_argument("--screenshot", type=Path, help="also save a screenshot here")
    args = parser.parse_args(argv)
    if not CHROMIUM.exists():
        parser.error(f"needs {CHROMIUM} (apt-get install chromium)")
    version = subprocess.run([str(CHROMIUM), "--version"], capture_output=True, text=True)
    print(f"machine: {cpu_model()}; {version.stdout.strip()}")
    start = time.perf_counter()
    page = build(args.out, args.n)
    print(
        f"wrote {page} ({page.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - start:.0f} s"
    )
    print(summary("open", measure(page, args.repeat)))
    print(summary("open with #selftest", measure(page, args.repeat, selftest=True)))
    if args.screenshot:
        open_page(page.as_uri(), "--hide-scrollbars", "--window-size=1300,2400",
                  f"--screenshot={args.screenshot.resolve()}")  # fmt: skip
        print(f"screenshot: {args.screenshot}")


if __name__ == "__main__":
    main()
