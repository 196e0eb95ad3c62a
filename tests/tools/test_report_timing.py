"""tools/report_timing.py: a synthetic report through the real writer, the probe appended after
the page's own script, and (with Chromium) the figures read back from a headless open."""

import json
import re

import pytest

from tools.report_timing import (
    CHROMIUM,
    PROBE,
    TIMING_PAGE,
    build,
    measure,
    read_timing,
    timing_page,
)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    return build(tmp_path_factory.mktemp("report"), 60, k=4)


def test_the_report_holds_every_image(page):
    html = page.read_text()
    data = json.loads(re.search(r"id=.report-data.>(.*?)</script>", html).group(1))
    assert len(data["names"]) == len(data["labels"]) == 60 and data["k"] == 4
    assert data["names"][1] == "album-01/IMG_00001.jpg"
    assert len(list((page.parent / "thumbs").glob("*.jpg"))) == 60


def test_the_probe_runs_after_the_page_script(page):
    copy = timing_page(page)
    html = copy.read_text()
    assert copy.name == TIMING_PAGE and copy.parent == page.parent  # thumbs/ resolve the same
    assert html.index(PROBE) > html.rindex("<script>", 0, html.index(PROBE)) > 0
    assert html.endswith("</body></html>\n") and page.read_text() not in html


def test_the_figures_are_read_from_the_dumped_dom():
    dom = '<pre id="timing">{&quot;built_ms&quot;: 412.5, &quot;selftest&quot;: null}</pre>'
    assert read_timing(dom) == {"built_ms": 412.5, "selftest": None}
    with pytest.raises(ValueError, match="probe did not run"):
        read_timing("<html></html>")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
def test_a_headless_open_reports_the_page_ready_and_its_selftest_passing(page):
    figures = measure(page, repeat=1, selftest=True)
    assert figures["selftest"] == "SELFTEST PASSED"
    assert len(figures["built_ms"]) == len(figures["chromium_s"]) == 1
    assert figures["layout_ms"][0] >= figures["built_ms"][0]
