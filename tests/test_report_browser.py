"""The HTML report tested as a person would use it: a tiny run trained here, `acn localize`,
`acn baseline` and `acn report` on it, then the page opened in a real headless Chromium
(Debian's ``chromium``, driven by Playwright for Python) with the network blocked.

Skips with the reason when Playwright or a Chromium binary is missing, except where
``ACN_REQUIRE_BROWSER`` is set (CI installs both and sets it: there a missing browser fails).
Set ``ACN_CHROMIUM`` to use another Chromium binary.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from acn.cli import main
from acn.evaluate import load_results
from acn.evaluate.diagnose import ERROR_TYPES, diagnose

pytestmark = pytest.mark.slow

PLOTS = ("fig-training", "fig-classification", "fig-timings", "fig-map", "fig-classes",
         "fig-fp-types", "fig-gain", "fig-fp-profile", "fig-fp-classes", "fig-sensitivity",
         "timeline")


def missing(reason: str) -> None:
    if os.environ.get("ACN_REQUIRE_BROWSER"):
        pytest.fail(f"{reason}, and ACN_REQUIRE_BROWSER is set")
    pytest.skip(reason)


def chromium_binary() -> str | None:
    for c in (os.environ.get("ACN_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if c and (shutil.which(c) or Path(c).is_file()):
            return shutil.which(c) or c
    return None


@pytest.fixture(scope="module")
def report(tmp_path_factory, tiny_folder):
    """A tiny run (no carved-split selection, few epochs: seconds, not minutes), its
    detections and its report."""
    from conftest import FAST_SET

    tmp = tmp_path_factory.mktemp("report")
    run, data = tmp / "run", str(tiny_folder)
    fast = [*FAST_SET, "select.validation_fraction=0", "base.epochs=12", "train.epochs=1"]
    sets = sum((["--set", s] for s in fast), [])
    assert main(["train", "--data", data, "--out", str(run), "--quiet", *sets]) == 0
    assert main(["localize", "--run", str(run), "--data", data, "--stream", "fused",
                 "--out", str(tmp / "pred_fused.json"), "--quiet"]) == 0
    assert main(["localize", "--run", str(run), "--data", data, "--stream", "rgb",
                 "--out", str(tmp / "pred_rgb.json"), "--quiet"]) == 0
    assert main(["baseline", "--run", str(run), "--data", data, "--stream", "both",
                 "--out", str(tmp / "baseline_both.json")]) == 0
    out = tmp / "report.html"
    assert main(["report", "--run", str(run), "--data", data,
                 "--pred", f"ACN fused={tmp / 'pred_fused.json'}",
                 "--pred", f"ACN rgb={tmp / 'pred_rgb.json'}",
                 "--pred-baseline", f"CAS baseline={tmp / 'baseline_both.json'}",
                 "--out", str(out)]) == 0
    return out, tmp


def test_error_types_add_up_on_real_predictions(report, tiny_folder):
    from acn.data.open import open_dataset

    _, tmp = report
    ann = open_dataset(tiny_folder).annotations
    for name in ("pred_fused.json", "pred_rgb.json", "baseline_both.json"):
        dets = load_results(tmp / name)
        d = diagnose(ann, dets)
        al, top = d.totals("all"), d.totals("top")
        n_fp = len(dets) - al["true_positive"] - d.num_unscored
        assert sum(al[e] for e in ERROR_TYPES) == n_fp
        assert sum(top.values()) == sum(min(int(g), int((d.label == ann.classes.index(c)).sum()))
                                        for c, g in zip(d.classes, d.num_ground_truth))


def test_report_in_a_real_browser(report, tmp_path):
    try:
        from playwright import sync_api
    except ImportError:
        missing("Playwright for Python is not installed (pip install -e '.[test]')")
    binary = chromium_binary()
    if binary is None:
        missing("no Chromium binary (apt-get install chromium, or set ACN_CHROMIUM)")
    page_path, _ = report
    assert page_path.stat().st_size < 20e6
    errors, remote = [], []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=binary,
                                    args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))

            def offline(route):  # the page must need nothing but itself
                if route.request.url.startswith("file:"):
                    return route.continue_()
                remote.append(route.request.url)
                return route.abort()
            page.route("**/*", offline)
            page.goto(page_path.resolve().as_uri(), wait_until="load")
            page.wait_for_selector("#timeline .main-svg", timeout=30_000)

            assert not errors, errors
            assert not remote, remote
            for div in PLOTS:  # every plot is drawn, with a size
                box = page.locator(f"#{div} .main-svg").first.bounding_box()
                assert box and box["width"] > 100 and box["height"] > 100, (div, box)
            assert page.locator("#fig-map .scatterlayer .trace").count() == 3
            assert page.locator("#fig-fp-types .barlayer .trace").count() == len(ERROR_TYPES)

            def timeline_state():
                return page.evaluate("""() => {
                    const gd = document.getElementById('timeline');
                    return {title: gd.layout.title.text,
                            gt: gd.data[0].base, names: gd.data.map(t => t.name),
                            svg: document.querySelector('#timeline .gtitle').textContent};
                }""")
            before = timeline_state()
            options = page.locator("#video-picker option")
            assert options.count() == 12
            current = page.eval_on_selector("#video-picker", "s => s.value")
            other = next(v for v in (options.nth(i).get_attribute("value")
                                     for i in range(options.count())) if v != current)
            page.select_option("#video-picker", other)
            page.wait_for_function(
                "t => document.querySelector('#timeline .gtitle').textContent !== t",
                arg=before["svg"], timeout=10_000)
            after = timeline_state()
            assert after["title"] != before["title"] and after["gt"] != before["gt"]
            assert after["svg"].startswith(page.locator("#video-picker option:checked")
                                           .text_content().split(" - ")[0])
            assert "ground truth" in after["names"] and "ACN fused" in after["names"]
            assert any(n.endswith("attention") for n in after["names"])

            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            assert not errors, errors
        finally:
            browser.close()
