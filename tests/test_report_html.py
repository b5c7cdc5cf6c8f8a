"""The HTML report (acn.report.html) built from made-up detections and base outputs: what the
page holds, without a browser (tests/test_report_browser.py opens one) and without training."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import yaml

from acn.config import defaults
from acn.data.features import Dataset, MemoryStore
from acn.evaluate.diagnose import ERROR_TYPES
from acn.fileio import write_json
from acn.report import map_table
from acn.report.html import Method, build_report
from acn.report.runinfo import config_rows, training_figures
from acn.report.timeline import choose_videos, downsample_max
from acn.train.outputs import BaseOutputs


def _detections(ann, rng, shift: float, noise: int) -> dict:
    """Each test instance found with a shifted end, plus ``noise`` random segments a video."""
    out = {}
    for v in ann.subset(ann.test_subset):
        dets = [(s.start, s.end + shift, s.label, float(rng.uniform(0.5, 1.0)))
                for s in v.segments]
        for _ in range(noise):
            a = float(rng.uniform(0, v.duration - 2))
            dets.append((a, a + 2.0, ann.classes[int(rng.integers(len(ann.classes)))],
                         float(rng.uniform(0, 0.6))))
        out[v.id] = dets
    return out


def _outputs(ann, ids, rng) -> dict:
    out = {}
    for s in ("rgb", "flow"):
        out[s] = {}
        for vid in ids:
            v = ann.videos[vid]
            T = int(round(v.duration * v.fps / v.frames_per_snippet))
            scp = rng.dirichlet(np.ones(len(ann.classes)), T).T.astype(np.float32)
            out[s][vid] = BaseOutputs(scp=scp, attention=rng.normal(size=T).astype(np.float32),
                                      video_scores=scp.mean(axis=1))
    return out


@pytest.fixture(scope="module")
def made_up(tmp_path_factory):
    from conftest import tiny_dataset

    ann, feats = tiny_dataset()
    ds = Dataset(ann, MemoryStore(feats))
    run = tmp_path_factory.mktemp("run")
    cfg = defaults()
    cfg["acn"]["alpha"] = 0.8
    cfg["base"]["hidden"] = 32
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    write_json(run / "train_log.json", {
        "train_videos": 24, "seed": 0,
        "selection": {"seconds": 3.0, "streams": {"rgb": {"tried": [{"losses": [2.0, 1.5]}]}},
                      "scoring": {"chosen": {"rgb_weight": 0.5}},
                      "background": {"chosen": True, "scores": {"true": 0.52, "false": 0.45}},
                      "regression": {"regression": True, "with_regression": 0.9,
                                     "without_regression": 0.8}},
        "rgb_base": {"seconds": 2.0, "losses": [2.0, 1.0, 0.5], "train_classification_map": 0.9,
                     "carved_validation_map": 0.8},
        "flow_base": {"seconds": 2.5, "losses": [2.1, 1.1, 0.4], "train_classification_map": 1.0},
        "rgb_regression": {"seconds": 1.0, "history": [{"loss": -0.1}, {"loss": -0.2}]},
        "test_classification_map": {"rgb": 0.95, "flow": 0.97}})
    rng = np.random.default_rng(0)
    methods = [Method("ACN fused", _detections(ann, rng, 0.3, 3), source="pred_fused.json"),
               Method("ACN rgb", _detections(ann, rng, 2.0, 5)),
               Method("baseline", _detections(ann, rng, 4.0, 8), baseline=True)]
    ids = [v.id for v in ann.subset(ann.test_subset)]
    return ds, run, methods, _outputs(ann, ids, rng)


def test_page_holds_every_section(made_up, tmp_path):
    ds, run, methods, outputs = made_up
    out = tmp_path / "r" / "report.html"
    info = build_report(out, ds, methods, run=run, outputs=outputs,
                        thresholds={"rgb": 0.1, "flow": 0.2}, timings={"localize": 1.5})
    page = out.read_text()
    assert info.path == out and info.size == len(page.encode()) and info.videos == 12
    assert info.seconds < 10 and info.size < 20e6
    # offline: plotly.js embedded once, no script or stylesheet fetched from anywhere (the
    # browser test also blocks the network)
    assert "<script src" not in page and "<link" not in page
    assert page.count("plotly.js v") == 1 and page.count("Plotly.newPlot") >= 10
    for anchor in ("id='run'", "id='map'", "id='diagnosis'", "id='timelines'",
                   "fig-training", "fig-classification", "fig-timings", "fig-map",
                   "fig-classes", "fig-fp-types", "fig-gain", "fig-fp-profile",
                   "fig-fp-classes", "fig-sensitivity", "id='video-picker'", "id='timeline'"):
        assert anchor in page, anchor
    assert "ActivityNet protocol" in page and "DETAD" in page
    assert "background class kept (carved mAP with 52.0, without 45.0)" in page
    # the config keys that differ from the defaults are highlighted
    assert re.search(r"<tr class='diff'><td>acn\.alpha</td><td>0\.8</td><td>null</td>", page)
    assert "<tr class='same'><td>acn.filters</td>" in page
    # the timeline's data parses and holds every test video with curves and detections
    blob = re.search(r"<script type='application/json' id='timeline-data'>(.*?)</script>",
                     page, re.S).group(1)
    data = json.loads(blob)
    assert data["methods"] == ["ACN fused", "ACN rgb", "baseline"]
    assert len(data["videos"]) == 12 and page.count("<option value=") == 12
    v = data["videos"][0]
    assert set(v["scp"]) == {"rgb", "flow"} and v["att"]["rgb"] and len(v["dets"]) == 3
    assert all(0.15 <= d[4] <= 1.0 for d in v["dets"][0])
    assert data["thresholds"] == {"rgb": 0.1, "flow": 0.2}
    # the diagnosis: every false positive has a type
    d = info.diagnoses["ACN rgb"]
    tot = d.totals("all")
    assert sum(tot[e] for e in ERROR_TYPES) + tot["true_positive"] + d.num_unscored == \
        sum(len(x) for x in methods[1].detections.values())


def test_sampling_and_downsampling_are_said(made_up, tmp_path):
    ds, run, methods, outputs = made_up
    out = tmp_path / "report.html"
    build_report(out, ds, methods[:1], run=None, outputs=outputs, max_videos=5, max_points=10,
                 top=2)
    page = out.read_text()
    assert "5 of 12 videos" in page and "an even sample" in page
    assert "downsampled by the maximum over equal bins" in page
    assert "highest-scored detections per method" in page
    data = json.loads(re.search(r"id='timeline-data'>(.*?)</script>", page, re.S).group(1))
    assert all(len(x) <= 10 for v in data["videos"] for x in v["att"].values())
    assert all(len(v["dets"][0]) <= 2 for v in data["videos"])
    assert "id='run'" in page and "Resolved config" not in page  # no run folder given


def test_pieces():
    y, f = downsample_max(np.array([0, 5, 1, 2, 9, 3, 4]), 3)
    assert f == 3 and y.tolist() == [5, 9, 4]
    assert downsample_max(np.arange(4), 10)[1] == 1
    rows = {r.key: r for r in config_rows({"a": {"b": 1, "c": None}, "d": [1]},
                                          {"a": {"b": 1, "c": {"x": 2}}, "e": 3})}
    assert not rows["a.b"].differs and rows["a.c"].differs and rows["a.c"].default == "{x: 2}"
    assert rows["d"].default == "(absent)" and rows["e"].value == "(absent)"
    t = training_figures({"rgb_base": {"losses": [1, 0.5], "seconds": 2}})
    assert t.base_loss == {"rgb": [1.0, 0.5]} and t.seconds == {"rgb base model": 2.0}
    assert training_figures({}).base_loss == {}

    class V:
        def __init__(self, i):
            self.id = f"v{i:03d}"
    vs = [V(i) for i in range(100)]
    assert [v.id for v in choose_videos(vs, 3)] == ["v000", "v050", "v099"]
    assert map_table  # still importable from acn.report


def test_errors(made_up, tmp_path):
    from acn.errors import AcnError

    ds, run, methods, _ = made_up
    with pytest.raises(AcnError, match="no detections"):
        build_report(tmp_path / "x.html", ds, [])
    with pytest.raises(AcnError, match="repeat"):
        build_report(tmp_path / "x.html", ds, [methods[0], methods[0]])
    with pytest.raises(AcnError, match="not classes"):
        build_report(tmp_path / "x.html", ds, [Method("m", {"video_test_0024":
                                                             [(0.0, 1.0, "Swim", 0.5)]})])
