"""Per-dataset choices on carved training videos: the split, the learning check, the fusion
weight, the whole-video baseline, and a fit whose Flow stream cannot learn."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acn import selection
from acn.train.outputs import BaseOutputs
from acn.baselines import whole_video_detections
from acn.data.features import Dataset, MemoryStore
from acn.errors import AcnError

from conftest import FAST_SET


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 60), fraction=st.floats(0.01, 0.99), seed=st.integers(0, 1000))
def test_carve_is_a_seeded_partition(n, fraction, seed):
    ids = [f"v{i:03d}" for i in range(n)]
    fit, val = selection.carve_ids(ids, fraction, seed)
    assert sorted(fit + val) == ids and not set(fit) & set(val)
    assert 1 <= len(val) <= n - 1
    assert len(val) == min(n - 1, max(1, round(fraction * n)))
    assert fit == [v for v in ids if v in set(fit)]  # order kept
    assert selection.carve_ids(ids, fraction, seed) == (fit, val)


def test_carve_errors():
    with pytest.raises(AcnError, match="fraction"):
        selection.carve_ids(["a", "b"], 0.0, 0)
    with pytest.raises(AcnError, match="1 training video"):
        selection.carve_ids(["a"], 0.5, 0)


def test_learned_threshold():
    assert selection.learned(0.95, 0.9) and not selection.learned(0.56, 0.9)
    assert not selection.learned(float("nan"), 0.9)
    msg = selection.not_learned_message("flow", 0.56, 0.37, [6.14, 4.8], 3)
    assert "flow base model did not learn" in msg and "56.0" in msg and "6.14 -> 4.80" in msg


def _planted_outputs(ds: Dataset, ids: list[str], good: bool, seed: int) -> dict:
    """SCP that marks the ground truth exactly (good) or random noise (bad)."""
    rng = np.random.default_rng(seed)
    out = {}
    for v in ids:
        video = ds.video(v)
        T = ds.features(v)[0].shape[0]
        C = len(ds.classes)
        scp = rng.uniform(0, 0.2, (C, T)).astype(np.float32)
        vs = np.full(C, 0.05, np.float32)
        for s in video.segments:
            c = ds.classes.index(s.label)
            vs[c] = 0.9
            if good:
                a, b = int(round(s.start * 25 / 16)), int(round(s.end * 25 / 16))
                scp[c, a:b] = 0.95
        if not good:
            scp = rng.uniform(0, 1, (C, T)).astype(np.float32)
        out[v] = BaseOutputs(scp=scp, attention=np.zeros(T, np.float32), video_scores=vs)
    return out


@pytest.mark.parametrize("good", ["rgb", "flow"])
def test_fusion_weight_leaves_a_useless_stream_out(tiny, good):
    ids = [v.id for v in tiny.subset("validation")][:12]
    rgb = _planted_outputs(tiny, ids, good == "rgb", 0)
    flow = _planted_outputs(tiny, ids, good == "flow", 1)
    w, scores, how = selection.choose_rgb_weight(tiny, ids, rgb, flow, [0, 0.25, 0.5, 0.75, 1])
    # the good stream alone scores perfectly; ties go to the weight nearest 0.5
    assert scores[f"{w:g}"] == max(scores.values()) == pytest.approx(1.0), scores
    assert w == (0.75 if good == "rgb" else 0.25), scores
    assert scores["0.5"] < 1.0 and scores["1" if good == "flow" else "0"] < 0.2
    assert "average mAP" in how and set(scores) == {"0", "0.25", "0.5", "0.75", "1"}
    # the carved copy evaluates only the carved videos; the dataset itself is unchanged
    assert tiny.annotations.test_subset == "test"


def test_fusion_weight_without_segments_follows_classification(tiny):
    ids = [v.id for v in tiny.subset("validation")][:6]
    import dataclasses

    videos = {k: dataclasses.replace(v, segments=()) for k, v in tiny.annotations.videos.items()}
    bare = dataclasses.replace(tiny, annotations=dataclasses.replace(tiny.annotations,
                                                                     videos=videos))
    out = _planted_outputs(tiny, ids, True, 0)
    w, scores, how = selection.choose_rgb_weight(bare, ids, out, out, [0, 0.5, 1],
                                                 {"rgb": 0.9, "flow": 0.1})
    assert w == 1.0 and scores == {} and "classification" in how


def test_whole_video_baseline(tiny):
    ids = [v.id for v in tiny.subset("test")][:4]
    out = _planted_outputs(tiny, ids, True, 0)
    dets = whole_video_detections(out, tiny)
    for v in ids:
        truth = {s.label for s in tiny.video(v).segments}
        assert {d[2] for d in dets[v]} == truth
        assert all(d[0] == 0.0 and d[1] == pytest.approx(tiny.video(v).duration) for d in dets[v])
    low = {v: BaseOutputs(o.scp, o.attention, np.full_like(o.video_scores, 0.01))
           for v, o in out.items()}
    assert all(len(d) == 1 for d in whole_video_detections(low, tiny).values())  # top-1 kept


def test_fit_reports_a_stream_that_did_not_learn_and_leaves_it_out(tiny, tmp_path):
    # Flow is noise unrelated to the labels: its base model cannot learn. The run must say so
    # (warning naming the stream, train_log.json) and the fusion must lean on RGB.
    from acn.config import resolve
    from acn.pipeline import ACN

    rng = np.random.default_rng(5)
    feats = {}
    for v in tiny.annotations.videos:
        r, f = tiny.features(v)
        feats[v] = (r, rng.uniform(0, 1, f.shape).astype(np.float32))
    noisy = Dataset(tiny.annotations, MemoryStore(feats))
    cfg = resolve(overrides=[*FAST_SET, "acn.alpha=null", "select.validation_fraction=0.25",
                             "select.fallback_recipes=[{weight_decay: 0.0005}]"])
    model = ACN(cfg)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        log = model.fit(noisy, tmp_path / "run", progress=False, stage="base")
    msgs = [str(w.message) for w in caught]
    assert any("flow base model did not learn" in m for m in msgs), msgs
    assert not any("rgb base model did not learn" in m for m in msgs), msgs
    saved = json.loads((tmp_path / "run" / "train_log.json").read_text())
    assert saved["flow_base"]["learned"] is False and saved["rgb_base"]["learned"] is True
    assert "did not learn" in saved["flow_base"]["warning"]
    tried = saved["selection"]["streams"]["flow"]["tried"]
    assert [t["recipe"] for t in tried] == [{}, {"weight_decay": 0.0005}]  # both recipes tried
    assert len(saved["selection"]["streams"]["rgb"]["tried"]) == 1  # RGB learned at once
    assert log["selection"]["scoring"]["chosen"]["rgb_weight"] >= 0.75
    scores = log["selection"]["scoring"]["scores"]
    atts = cfg["select"]["attention_weights"]
    # Lc sources x weights x alphas x whole modes x attention weights
    assert len(scores) == 2 * 5 * 2 * 3 * len(atts)
    # Lc's features: the source whose best grid point (tolerance rule within it) scores higher
    modes = ("off", "scored", "first")

    def grid_of(lc):  # "lc=L w=W alpha=A whole_video=H attention=T" -> (W, A, H, T)
        return {(float(k.split()[1][2:]), float(k.split()[2][6:]),
                 modes.index(k.split()[3][12:]), float(k.split()[4][10:])): v
                for k, v in scores.items() if k.startswith(f"lc={lc} ")}

    best = {}
    for lc in ("embedding", "standardize"):
        within = grid_of(lc)
        best[lc] = within[selection.best_choice(within, (0.5, 0.9, 0, 0.0), 0.005)]
    chosen_lc = log["selection"]["scoring"]["chosen"]["lc_features"]
    assert chosen_lc == model.cfg["acn"]["lc_features"]
    assert best[chosen_lc] == max(best.values())
    # then alpha alone at the chosen weight, whole-video mode and attention weight, the first
    # choice kept unless another leads by the tolerance
    within = grid_of(chosen_lc)
    w1, a1, h1, t1 = selection.best_choice(within, (0.5, 0.9, 0, 0.0), 0.005)
    chosen = log["selection"]["scoring"]["chosen"]
    assert (chosen["rgb_weight"], modes.index(chosen["whole_video"]),
            chosen["attention_weight"]) == (w1, h1, t1)
    assert model.cfg["localize"]["attention_weight"] == t1
    fine = {(float(k),): v for k, v in log["selection"]["scoring"]["alpha_scores"].items()}
    assert sorted(fine) == [(a,) for a in cfg["select"]["alpha_refinement"]]
    assert fine[(a1,)] == pytest.approx(within[(w1, a1, h1, t1)])  # blended = scored at a1
    assert chosen["alpha"] == model.cfg["acn"]["alpha"] == selection.best_choice(
        fine, (a1,), 0.005)[0]
    assert model.cfg["localize"]["whole_video"] in ("off", "scored", "first")
    nms = log["selection"]["scoring"]["nms_scores"]
    assert sorted(nms) == ["0.3", "0.4", "0.5", "0.6"]
    assert model.cfg["localize"]["nms_iou"] == selection.best_choice(
        {(float(k),): v for k, v in nms.items()}, (0.4,), 0.005)[0]
    # regression nets trained on the fit split were compared with the CAS boundaries
    reg = log["selection"]["regression"]
    assert 0 <= reg["without_regression"] <= 1 and 0 <= reg["with_regression"] <= 1
    assert reg["regression"] == model.cfg["acn"]["regression"] == (
        reg["with_regression"] > reg["without_regression"] + 0.01
        and reg["bootstrap_support"] >= 0.8)
    # the chosen values are the run's config
    from acn.config import _read_yaml

    written = _read_yaml((tmp_path / "run" / "config.yaml").read_text(), "config")
    assert written["localize"]["rgb_weight"] == model.rgb_weight() >= 0.75
    assert written["localize"]["whole_video"] == model.cfg["localize"]["whole_video"]
    assert written["localize"]["nms_iou"] == model.cfg["localize"]["nms_iou"]
    assert written["localize"]["attention_weight"] == model.cfg["localize"]["attention_weight"]
    assert set(written["base"]["per_stream"]) == {"rgb", "flow"}
    # the background class was chosen on the carved videos between two trained variants
    bg = log["selection"]["background"]
    assert set(bg["scores"]) == {"false", "true"} and "choices" not in bg
    assert all(0 <= v <= 1 for v in bg["scores"].values())
    assert bg["chosen"] == bool(selection.best_choice(
        {(float(k == "true"),): v for k, v in bg["scores"].items()}, (0.0,), 0.005)[0])
    assert written["base"]["background"] is model.cfg["base"]["background"] is bg["chosen"]
    # the scoring values in force are the chosen variant's, scored on its own models
    assert log["selection"]["scoring"]["score"] == pytest.approx(
        bg["scores"][str(bg["chosen"]).lower()])
    assert set(bg["scoring"]) == {str(not bg["chosen"]).lower()}  # the other variant's
    for s in ("rgb", "flow"):  # the final base models are the chosen variant
        assert model.models[s].base.background is bg["chosen"]


@settings(max_examples=40, deadline=None)
@given(lengths=st.lists(st.floats(1, 5000), min_size=1, max_size=200),
       count=st.integers(1, 8), smallest_top=st.sampled_from([1, 8, 32]))
def test_data_anchors_are_powers_of_two_covering_the_long_segments(lengths, count, smallest_top):
    a = selection.data_anchors(lengths, count=count, min_largest=smallest_top)
    assert a == sorted(a) and all(x & (x - 1) == 0 for x in a)  # powers of two, ascending
    assert all(b == 2 * x for x, b in zip(a, a[1:]))  # consecutive
    assert len(a) == min(count, int(np.log2(a[-1])) + 1)
    q = np.quantile(lengths, 0.9)
    assert a[-1] >= max(q, smallest_top) and (a[-1] == smallest_top or a[-1] < 2 * q)


def test_data_anchors_thumos_and_activitynet_like():
    rng = np.random.default_rng(0)
    thumos = np.maximum(2, rng.lognormal(np.log(4), 0.9, 5000)).round()  # CAS lengths, snippets
    assert selection.data_anchors(thumos) == [1, 2, 4, 8, 16, 32]
    anet = np.maximum(2, rng.lognormal(np.log(45), 1.0, 5000)).round()
    assert selection.data_anchors(anet) == [8, 16, 32, 64, 128, 256]
    assert selection.data_anchors([]) == [1, 2, 4, 8, 16, 32]


def test_anchors_chosen_from_the_data_are_the_runs_and_load_back(tiny, tmp_path):
    from acn.config import resolve
    from acn.pipeline import ACN

    cfg = resolve(overrides=[*(s for s in FAST_SET if not s.startswith("acn.anchors")),
                             "acn.anchors=null", "train.epochs=1"])
    model = ACN(cfg)
    log = model.fit(tiny, tmp_path / "run", progress=False)
    chosen = log["anchors"]["chosen"]
    assert chosen == model.cfg["acn"]["anchors"] and len(chosen) == 6
    back = ACN.load(tmp_path / "run")
    assert back.cfg["acn"]["anchors"] == chosen
    assert back.models["flow"].nets.anchors == chosen
    ids = [v.id for v in tiny.subset("test")][:3]
    assert set(back.localize(tiny, ids, ["fused"], progress=False)["fused"]) == set(ids)


def test_bootstrap_win_rate_follows_a_clear_lead_and_a_tie(tiny):
    # detections equal to the truth beat detections shifted off it on every resample; a
    # method never beats itself; the fraction is the brute-force count over the same draws
    ids = [v.id for v in tiny.subset("test")][:8]
    truth = {v: [(s.start, s.end, s.label, 1.0) for s in tiny.video(v).segments] for v in ids}
    off = {v: [(a + 0.6 * (b - a), b + 0.6 * (b - a), c, sc) for a, b, c, sc in d]
           for v, d in truth.items()}
    assert selection.bootstrap_win_rate(tiny, ids, truth, off, 0.01, rounds=30) == 1.0
    assert selection.bootstrap_win_rate(tiny, ids, off, truth, 0.0, rounds=30) == 0.0
    assert selection.bootstrap_win_rate(tiny, ids, truth, truth, 0.0, rounds=30) == 0.0
    # half the videos right, half wrong, against the reverse: a coin over resamples
    mixed_a = {v: (truth[v] if i % 2 else off[v]) for i, v in enumerate(ids)}
    mixed_b = {v: (off[v] if i % 2 else truth[v]) for i, v in enumerate(ids)}
    rate = selection.bootstrap_win_rate(tiny, ids, mixed_a, mixed_b, 0.0, rounds=60, seed=3)
    assert 0.1 < rate < 0.9


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.floats(0, 1), min_size=1, max_size=10),
       tol=st.sampled_from([1e-6, 0.005, 0.05]))
def test_best_choice_takes_the_nearest_to_the_fallback_within_the_tolerance(values, tol):
    keys = [(w, a) for w in (0.0, 0.25, 0.5, 0.75, 1.0) for a in (0.6, 0.8)][: len(values)]
    scores = dict(zip(keys, values))
    prefer = (0.5, 0.8)
    got = selection.best_choice(scores, prefer, tol)
    best = max(values)
    assert scores[got] >= best - tol
    dist = {k: abs(k[0] - prefer[0]) + abs(k[1] - prefer[1]) for k in keys}
    # brute force: no key within the tolerance is nearer the fallback
    assert all(dist[k] >= dist[got] for k in keys if scores[k] >= best - tol)


def test_best_choice_keeps_the_fallback_against_a_lead_inside_the_tolerance():
    scores = {(0.75, 0.8): 0.4511, (0.5, 0.8): 0.4495, (1.0, 0.8): 0.40}
    assert selection.best_choice(scores, (0.5, 0.8), 0.005) == (0.5, 0.8)
    assert selection.best_choice(scores, (0.5, 0.8), 0.001) == (0.75, 0.8)
    assert selection.best_choice({(True,): 0.3, (False,): 0.2}, (False,), 0.005) == (True,)


def test_background_class_chosen_when_the_scoring_values_are_fixed(tiny, tmp_path):
    # nothing else left to choose: each variant is scored with the configured values
    from acn.config import resolve
    from acn.pipeline import ACN

    sets = [*FAST_SET, "select.validation_fraction=0.25", "select.regression_check=false",
            "localize.rgb_weight=0.5", "localize.whole_video=off", "localize.nms_iou=0.4"]
    model = ACN(resolve(overrides=sets))
    log = model.fit(tiny, tmp_path / "run", progress=False, stage="base")
    bg = log["selection"]["background"]
    assert set(bg["scores"]) == {"false", "true"}
    assert bg["chosen"] is model.cfg["base"]["background"]
    assert (model.cfg["localize"]["rgb_weight"], model.cfg["acn"]["alpha"],
            model.cfg["localize"]["nms_iou"]) == (0.5, 0.8, 0.4)
    assert all(model.models[s].base.background is bg["chosen"] for s in ("rgb", "flow"))


@pytest.mark.parametrize("case", ["fixed", "no_segments"])
def test_background_class_fixed_or_without_segments_trains_one_variant(tiny, tmp_path, case):
    # base.background set in the config is kept; left null, it needs segments on the carved
    # videos to be chosen, and takes its fallback (none) without them
    import dataclasses

    from acn.config import resolve
    from acn.pipeline import ACN

    ds = tiny
    sets = [*FAST_SET, "select.validation_fraction=0.25", "select.regression_check=false"]
    if case == "fixed":
        sets.append("base.background=true")
    else:
        ann = tiny.annotations
        videos = {k: dataclasses.replace(v, segments=[]) if v.subset == ann.train_subset else v
                  for k, v in ann.videos.items()}
        ds = dataclasses.replace(tiny, annotations=dataclasses.replace(ann, videos=videos))
    model = ACN(resolve(overrides=sets))
    log = model.fit(ds, tmp_path / "run", progress=False, stage="base")
    want = case == "fixed"
    assert "background" not in log["selection"]
    assert model.cfg["base"]["background"] is want
    assert all(model.models[s].base.background is want for s in ("rgb", "flow"))
    assert all(len(log["selection"]["streams"][s]["tried"]) >= 1 for s in ("rgb", "flow"))


def test_alpha_refinement_out_of_range_is_refused_before_any_scoring():
    from types import SimpleNamespace

    from acn.config import resolve
    from acn.errors import AcnError
    from acn.train.select import choose_scoring

    model = SimpleNamespace(cfg=resolve(overrides=["select.alpha_refinement=[0.6, 1.5]"]))
    with pytest.raises(AcnError, match=r"select.alpha_refinement: alphas lie in \[0, 1\]"):
        choose_scoring(model, None, [], {})  # no data: it must stop at the config
