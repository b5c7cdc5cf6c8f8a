"""End to end on a tiny planted dataset: train, localize, evaluate, reload, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from acn.cli import main
from acn.evaluate import evaluate, load_results
from acn.model.regression import RegressionNets
from acn.pipeline import ACN

from conftest import FAST_SET


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory):
    from acn.config import resolve

    run = tmp_path_factory.mktemp("run")
    model = ACN(resolve(overrides=FAST_SET))
    model.fit(tiny, run, progress=False)
    return model, run


def test_fit_localize_evaluate_finds_planted_actions(tiny, trained):
    model, run = trained
    ids = [v.id for v in tiny.subset("test")]
    dets = model.localize(tiny, ids, ["rgb", "flow", "fused"], progress=False)
    for stream, d in dets.items():
        assert set(d) == set(ids)
        for vid, rows in d.items():
            dur = tiny.video(vid).duration
            assert all(0 <= s <= e <= dur + 1e-9 for s, e, _, _ in rows)
            assert all(lab in tiny.classes for _, _, lab, _ in rows)
            scores = [r[3] for r in rows]
            assert scores == sorted(scores, reverse=True)
    res = evaluate(tiny.annotations, dets["fused"], "test", "activitynet", tious=[0.3, 0.5])
    # planted actions are easy: a broken pipeline scores ~0, a working one well above chance
    assert res.map[0.3] > 0.3, res.format_table()


def _same_detections(a, b):
    assert a.keys() == b.keys()
    for vid in a:
        assert [r[2] for r in a[vid]] == [r[2] for r in b[vid]], vid
        got = [x for r in a[vid] for x in (r[0], r[1], r[3])]
        assert got == pytest.approx([x for r in b[vid] for x in (r[0], r[1], r[3])], abs=1e-6)


def test_localize_reuses_its_padding_buffers_safely(tiny, trained):
    # the padded batches live in buffers kept on the model between calls: a later call with
    # other (shorter) videos, a repeat, and two concurrent calls must all see only their own
    from concurrent.futures import ThreadPoolExecutor

    model = trained[0]
    ids = sorted(v.id for v in tiny.subset("test"))
    first = model.localize(tiny, ids, ["fused"], progress=False)["fused"]
    assert model._pad_buffers and all(b for b in model._pad_buffers.values())
    few = ids[:2]
    short = model.localize(tiny, few, ["fused"], progress=False)["fused"]
    _same_detections(short, {v: first[v] for v in few})
    _same_detections(model.localize(tiny, ids, ["fused"], progress=False)["fused"], first)
    with ThreadPoolExecutor(2) as ex:
        both = list(ex.map(lambda _: model.localize(tiny, ids, ["fused"], progress=False),
                           range(2)))
    for d in both:
        _same_detections(d["fused"], first)


def test_fused_keeps_every_flow_detection(tiny, trained):
    # the paper's fusion (Sec. 3.4): every Flow proposal survives
    import copy

    model = copy.copy(trained[0])
    model.cfg = copy.deepcopy(model.cfg)
    model.cfg["localize"]["fusion"] = "paper"
    ids = [v.id for v in tiny.subset("test")]
    dets = model.localize(tiny, ids, ["flow", "fused"], progress=False)
    for vid in ids:
        flow = {(round(s, 6), round(e, 6), lab) for s, e, lab, _ in dets["flow"][vid]}
        fused = {(round(s, 6), round(e, 6), lab) for s, e, lab, _ in dets["fused"][vid]}
        assert flow <= fused


def test_run_folder_reloads_with_weights_only(tiny, trained):
    model, run = trained
    for p in (run / "checkpoints").glob("*.pt"):
        torch.load(p, weights_only=True)  # raises if anything but plain data were pickled
    again = ACN.load(run)
    ids = [v.id for v in tiny.subset("test")][:4]
    a = model.localize(tiny, ids, ["fused"], progress=False)
    b = again.localize(tiny, ids, ["fused"], progress=False)
    assert a == b
    assert (run / "config.yaml").is_file() and (run / "train_log.json").is_file()


def test_regression_nets_padding_does_not_change_outputs():
    torch.manual_seed(0)
    nets = RegressionNets(8, [1, 4, 8], filters=6, zero_init=False)
    short, long = torch.rand(1, 20, 8), torch.rand(1, 33, 8)
    batch = torch.zeros(2, 33, 8)
    batch[0, :20], batch[1] = short[0], long[0]
    alone = nets(short, torch.tensor([20]))
    padded = nets(batch, torch.tensor([20, 33]))
    for a in nets.anchors:
        assert torch.allclose(alone[a][0], padded[a][0, :, :20], atol=1e-6)


def test_regression_nets_inference_layout_matches_training_layout():
    # without gradients the nets run 1 x 3 conv2d on the (B, T, D) layout; with gradients
    # conv1d on a (B, D, T) copy: the same numbers, garbage padding masked in both, and
    # zero_padded=True (input not re-masked) equal on a zero-padded batch
    torch.manual_seed(1)
    nets = RegressionNets(8, [1, 2, 4, 8, 16], filters=6, zero_init=False)
    lengths = torch.tensor([33, 20, 5])
    batch = torch.rand(3, 33, 8)
    garbage = batch.clone()
    for i, n in enumerate(lengths.tolist()):
        batch[i, n:] = 0.0
        garbage[i, n:] = 1e3
    train_layout = nets(batch, lengths)  # gradients enabled
    with torch.inference_mode():
        infer = nets(garbage, lengths)
        infer_zero = nets(batch, lengths, zero_padded=True)
        unmasked = nets(batch)
    assert torch.is_grad_enabled()
    with torch.no_grad():
        plain = nets(batch)
    for a in nets.anchors:
        assert train_layout[a].requires_grad and not infer[a].requires_grad
        assert infer[a].shape == train_layout[a].shape == (3, 2, 33)
        for i, n in enumerate(lengths.tolist()):
            torch.testing.assert_close(infer[a][i, :, :n], train_layout[a][i, :, :n].detach(),
                                       rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(infer_zero[a], infer[a], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(unmasked[a], plain[a].detach())
    # the masking matters: without lengths the garbage reaches the real snippets
    with torch.inference_mode():
        leaked = nets(garbage)
    assert not torch.allclose(leaked[16][1, :, :20], infer[16][1, :, :20])


def test_dilation_follows_anchor():
    nets = RegressionNets(4, [1, 2, 4, 8, 16, 32], filters=4)
    assert [nets.nets[str(a)].conv1.dilation[0] for a in nets.anchors] == [1, 1, 1, 2, 4, 8]
    # zero-initialised output layer: regression starts from the plain anchors
    r = nets(torch.rand(1, 40, 4), torch.tensor([40]))
    assert all(float(v.detach().abs().max()) == 0.0 for v in r.values())


def test_cli_train_localize_evaluate(tiny_folder, tmp_path, capsys):
    run, pred = tmp_path / "run", tmp_path / "pred.json"
    sets = sum((["--set", s] for s in FAST_SET), [])
    assert main(["train", "--data", str(tiny_folder), "--out", str(run), "--seed", "1", *sets]) == 0
    # the summary names the Lc features and the attention weight chosen on the carved split,
    # as config.yaml has them
    written = yaml.safe_load((run / "config.yaml").read_text())
    lc = written["acn"]["lc_features"]
    words = {"embedding": "Lc on the base models' embedding",
             "standardize": "Lc on standardised features"}
    printed = capsys.readouterr().out
    assert words[lc] in printed
    att = written["localize"]["attention_weight"]
    assert att in (0.0, 0.4, 0.8) and f"attention weight {att:g}" in printed
    assert main(["localize", "--run", str(run), "--data", str(tiny_folder), "--out", str(pred),
                 "--stream", "flow"]) == 0
    dets = load_results(pred)
    assert len(dets) > 0
    out_json = tmp_path / "map.json"
    assert main(["evaluate", "--gt", str(tiny_folder), "--pred", str(pred), "--protocol",
                 "activitynet", "--tiou", "0.3,0.5", "--json", str(out_json)]) == 0
    rep = json.loads(out_json.read_text())
    assert rep["protocol"] == "activitynet" and set(rep["map"]) == {"0.3", "0.5"}
    assert "seed: 1" in (run / "config.yaml").read_text()


def test_cli_errors_are_one_line(tiny_folder, tmp_path, capsys):
    assert main(["localize", "--run", str(tmp_path / "nope"), "--data", str(tiny_folder),
                 "--out", str(tmp_path / "p.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("acn: error:") and "nope" in err[0]
    assert main(["train", "--data", str(tiny_folder), "--out", str(tmp_path / "r"),
                 "--set", "acn.alpha=high"]) == 2
    assert "acn.alpha must be a float" in capsys.readouterr().err
    assert not (tmp_path / "p.json").exists()


@pytest.mark.slow
def test_same_seed_same_predictions(tiny, tmp_path):
    from acn.config import resolve

    ids = [v.id for v in tiny.subset("test")]
    preds = []
    for k in range(2):
        m = ACN(resolve(overrides=FAST_SET))
        m.fit(tiny, tmp_path / f"run{k}", progress=False)
        preds.append(m.localize(tiny, ids, ["fused"], progress=False))
    assert preds[0] == preds[1]
    a = torch.load(tmp_path / "run0/checkpoints/flow_regression.pt", weights_only=True)
    b = torch.load(tmp_path / "run1/checkpoints/flow_regression.pt", weights_only=True)
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert np.isfinite([d[3] for d in preds[0]["fused"][ids[0]]]).all()


def test_packaged_base_defaults_match_the_library():
    from acn.train.base import DEFAULT_BASE_CONFIG
    from acn.config import defaults
    from acn.selection import CHOSEN_FALLBACKS

    base = {k: v for k, v in defaults()["base"].items()
            if k not in ("attention_percentile", "per_stream")}
    # the packaged config chooses the background class per dataset; the library's
    # fallback for it is the library default
    assert base.pop("background") is None
    lib = dict(DEFAULT_BASE_CONFIG)
    assert lib.pop("background") is CHOSEN_FALLBACKS[("base", "background")]
    assert base == lib


def test_regression_training_skips_videos_shorter_than_every_anchor(fast_cfg):
    # ActivityNet-like data has 3-snippet videos and 16-snippet anchors: such a training video
    # offers no proposal, and must be skipped (and counted), not crash the epoch
    from acn.train.outputs import BaseOutputs
    from acn.train.regression import train_regression

    rng = np.random.default_rng(0)
    lengths = {"long": 40, "short": 1}
    feats = {v: rng.random((T, 8)).astype(np.float32) for v, T in lengths.items()}
    outs = {v: BaseOutputs(scp=rng.dirichlet(np.ones(3), T).T.astype(np.float32),
                           attention=np.ones(T, np.float32),
                           video_scores=np.array([0.8, 0.1, 0.1], np.float32))
            for v, T in lengths.items()}
    acn = {**fast_cfg["acn"], "anchors": [2, 4], "lc_features": "raw"}
    nets, history = train_regression(feats.__getitem__, ["long", "short"], outs,
                                     {"long": [0], "short": [0]}, 8, acn,
                                     {**fast_cfg["train"], "batch_videos": 1}, seed=0,
                                     progress=False)
    assert [h["videos_shorter_than_every_anchor"] for h in history] == [1, 1]
    assert all(h["kept_proposals"] > 0 for h in history)


def _one_video_both_streams(model, ds):
    """The first test video's features, base outputs (per stream and mean) and regressions
    (per stream and their mean, as the joint fusion uses them)."""
    from acn.pipeline import mean_outputs

    vid = [v.id for v in ds.subset("test")][0]
    rgb, flow = (torch.from_numpy(a) for a in ds.features(vid))
    outs = {s: {vid: model.base_outputs(ds, [vid], s)[vid]} for s in ("rgb", "flow")}
    mean = mean_outputs(outs, vid)
    with torch.inference_mode():
        regs = {s: {a: r[0] for a, r in model.models[s].nets(x[None]).items()}
                for s, x in (("rgb", rgb), ("flow", flow))}
    joint_regs = {a: (regs["rgb"][a] + regs["flow"][a]) / 2 for a in regs["rgb"]}
    return vid, rgb, flow, outs, mean, regs, joint_regs


def test_joint_fusion_scores_each_segment_by_both_streams(tiny, trained):
    # joint: one proposal set per video; -L with the mean of the streams' Lc on the mean SCP
    # equals the mean of the per-stream scores of the same segments (no NMS to compare sets)
    import copy

    model, _ = trained
    model = copy.copy(model)
    model.cfg = copy.deepcopy(model.cfg)
    model.cfg["localize"].update(nms_iou=1.0, pre_nms_topk=10 ** 6, max_detections=10 ** 6,
                                 video_score_weight=0.0, fusion="joint")
    vid, rgb, flow, outs, mean, regs, joint_regs = _one_video_both_streams(model, tiny)
    joint = model._score_one([rgb, flow], mean, joint_regs, 0.0)
    per = [model._score_one(x, mean, joint_regs, 0.0) for x in (rgb, flow)]
    assert len(joint.scores) > 0
    for p in per:  # same candidates, same boundaries: the mean SCP and regressions decide them
        assert len(p.scores) == len(joint.scores)
    order = [np.lexsort((q.segments[:, 1], q.segments[:, 0], q.labels)) for q in (joint, *per)]
    for q, o in zip(per, order[1:]):
        np.testing.assert_array_equal(q.segments[o], joint.segments[order[0]])
        np.testing.assert_array_equal(q.labels[o], joint.labels[order[0]])
    j, r, f = (q.scores[o] for q, o in zip((joint, *per), order))
    np.testing.assert_allclose(j, (r + f) / 2, rtol=1e-9, atol=1e-12)
    # and localize(fused) under joint fusion returns exactly these proposals (after NMS)
    dets = model.localize(tiny, [vid], ["fused"], progress=False)["fused"][vid]
    assert len(dets) == len(joint.scores)


def test_whole_video_proposals_join_the_candidates_scored_by_minus_l(tiny, trained):
    # localize.whole_video: one (0, T) proposal per localized class joins the CAS ones, scored
    # by -L like them (score_segments on that segment), and nothing else changes
    import copy

    from acn.localize.segments import score_segments

    model, _ = trained
    model = copy.copy(model)
    model.cfg = copy.deepcopy(model.cfg)
    model.cfg["acn"]["regression"] = False
    # the whole-video proposals alone (with whole-video proposals on, "auto" would also add
    # the smoothed CAS's candidates: tests/test_long_candidates.py)
    model.cfg["acn"]["long_candidates"] = "off"
    model.cfg["localize"].update(nms_iou=1.0, pre_nms_topk=10 ** 6, max_detections=10 ** 6,
                                 video_score_weight=0.0, whole_video=False)
    vid, rgb, flow, outs, mean, regs, joint_regs = _one_video_both_streams(model, tiny)
    T = rgb.shape[0]
    without = model._score_one(rgb, mean, regs["rgb"], 0.0)
    model.cfg["localize"]["whole_video"] = True
    with_ = model._score_one(rgb, mean, regs["rgb"], 0.0)
    whole = (with_.segments[:, 0] == 0) & (with_.segments[:, 1] == T)
    old_whole = (without.segments[:, 0] == 0) & (without.segments[:, 1] == T)
    classes = set(with_.labels[whole].tolist())
    assert classes and classes == set(without.labels.tolist()) | classes  # every localized class
    assert len(with_.scores) == len(without.scores) + len(classes - set(without.labels[old_whole]))
    lab = torch.tensor(sorted(classes))
    want = score_segments(rgb, torch.from_numpy(mean.scp), lab,
                          torch.zeros(len(lab), dtype=torch.float64),
                          torch.full((len(lab),), float(T), dtype=torch.float64),
                          model.cfg["acn"]["inflation"], model.cfg["acn"]["alpha"],
                          model.cfg["acn"]["score_terms"], model.cfg["acn"]["lc_features"])
    got = {int(c): s for c, s in zip(with_.labels[whole], with_.scores[whole])}
    np.testing.assert_allclose([got[int(c)] for c in lab], want.numpy(), rtol=1e-9)



def test_whole_video_first_ranks_it_above_all_and_keeps_it_out_of_nms(tiny, trained):
    # localize.whole_video=first: the NMS of the other proposals is that of "off", and each
    # localized class gets one (0, T) proposal scored above every other proposal, in the
    # order of the video scores
    import copy

    from acn.localize.video import WHOLE_FIRST_OFFSET

    model, _ = trained
    model = copy.copy(model)
    model.cfg = copy.deepcopy(model.cfg)
    model.cfg["acn"]["regression"] = False
    model.cfg["acn"]["long_candidates"] = "off"  # the whole-video proposals alone
    model.cfg["localize"]["valley"] = "off"  # (auto: on with "off", off with "first")
    # a strict NMS: a whole-video proposal inside it would suppress most CAS segments
    model.cfg["localize"].update(nms_iou=0.1, video_score_weight=0.3, whole_video="off")
    vid, rgb, flow, outs, mean, regs, joint_regs = _one_video_both_streams(model, tiny)
    T = rgb.shape[0]
    off = model._score_one(rgb, mean, regs["rgb"], 0.0)
    model.cfg["localize"]["whole_video"] = "first"
    first = model._score_one(rgb, mean, regs["rgb"], 0.0)
    whole = (first.segments[:, 0] == 0) & (first.segments[:, 1] == T)
    classes = first.labels[whole]
    assert len(classes) == len(set(classes.tolist())) > 0  # one per localized class
    assert set(off.labels.tolist()) <= set(classes.tolist())
    rest = ~whole
    # brute force: the others are exactly off's proposals minus off's own whole-video ones
    off_rest = ~((off.segments[:, 0] == 0) & (off.segments[:, 1] == T))
    np.testing.assert_array_equal(first.segments[rest], off.segments[off_rest])
    np.testing.assert_array_equal(first.scores[rest], off.scores[off_rest])
    np.testing.assert_allclose(first.scores[whole],
                               WHOLE_FIRST_OFFSET + 0.3 + mean.video_scores[classes])
    assert first.scores[whole].min() > first.scores[rest].max()
    # older configs' booleans still read
    from acn.config import resolve
    from acn.errors import AcnError
    assert resolve(None, ["localize.whole_video=true"])["localize"]["whole_video"] == "scored"
    assert resolve(None, ["localize.whole_video=false"])["localize"]["whole_video"] == "off"
    with pytest.raises(AcnError, match="whole_video"):
        resolve(None, ["localize.whole_video=always"])

@pytest.mark.slow
def test_demo_quick_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quick", "--videos", "80", "--quiet"]) == 0
    table = (out / "results.md").read_text()
    for row in ("ACN fused", "ACN flow", "ACN rgb", "CAS baseline (topk_mil) both"):
        assert row in table
    assert json.loads((out / "results.json").read_text())
    for s in ("rgb", "flow", "fused", "baseline_both"):
        assert load_results(out / f"pred_{s}.json")
    assert list((out / "plots").glob("*.png"))
    assert (out / "config.yaml").is_file() and (out / "run" / "config.yaml").is_file()
    page = out / "report.html"  # the demo ends with its HTML report, and says where it is
    assert page.is_file() and page.stat().st_size > 100_000
    assert str(page) in capsys.readouterr().out


def test_score_one_shares_lc_tables_between_stream_and_joint_scoring(tiny, trained, monkeypatch):
    # localize(rgb, flow, fused) scores each video per stream and jointly: with one cache per
    # video each stream's Lc tables are built once, and the scores are those of uncached calls
    import copy

    import acn.localize.video as pl
    model, _ = trained
    model = copy.copy(model)
    model.cfg = copy.deepcopy(model.cfg)
    model.cfg["acn"].update(proposals="both", lc_features="standardize")
    model.cfg["localize"]["video_score_weight"] = 0.0
    vid, rgb, flow, outs, mean, regs, joint_regs = _one_video_both_streams(model, tiny)
    calls = []
    real = pl.feature_integral
    monkeypatch.setattr(pl, "feature_integral", lambda f, lc: calls.append(lc) or real(f, lc))
    cache: dict = {}
    cached = [model._score_one(x, outs[s][vid], regs[s], 0.0, lc_cache=cache, lc_keys=[s])
              for s, x in (("rgb", rgb), ("flow", flow))]
    cached.append(model._score_one([rgb, flow], mean, joint_regs, 0.0, lc_cache=cache,
                                   lc_keys=["rgb", "flow"]))
    assert sorted(cache) == ["flow", "rgb"] and calls == ["standardize"] * 2
    plain = [model._score_one(rgb, outs["rgb"][vid], regs["rgb"], 0.0),
             model._score_one(flow, outs["flow"][vid], regs["flow"], 0.0),
             model._score_one([rgb, flow], mean, joint_regs, 0.0)]
    assert len(calls) == 2 + 1 + 1 + 2  # uncached: every call builds its own (anchor and
    # CAS proposals of one call share them)
    assert sum(len(p.scores) for p in plain) > 0
    for c, p in zip(cached, plain):
        np.testing.assert_array_equal(c.segments, p.segments)
        np.testing.assert_array_equal(c.labels, p.labels)
        np.testing.assert_allclose(c.scores, p.scores, rtol=1e-9, atol=1e-12)


@pytest.mark.slow
def test_cli_pipeline_on_a_wtalc_folder(tmp_path, capsys):
    # exactly what a user with the published W-TALC THUMOS14 features runs: the joint feature
    # file + annotation folder, pickles trusted explicitly, train -> localize -> evaluate
    data, run, pred = tmp_path / "Thumos14reduced", tmp_path / "run", tmp_path / "pred.json"
    assert main(["synth", "--preset", "thumos14", "--videos", "24", "--dim", "32",
                 "--seed", "2", "--format", "wtalc", "--out", str(data)]) == 0
    assert (data / "Thumos14reduced-I3D-JOINTFeatures.npy").is_file()
    sets = sum((["--set", s] for s in FAST_SET), [])
    assert main(["train", "--data", str(data), "--out", str(run), "--seed", "0", *sets]) == 2
    assert "--allow-pickle" in capsys.readouterr().err  # refused until trusted
    assert main(["train", "--data", str(data), "--allow-pickle", "--out", str(run),
                 "--seed", "0", *sets]) == 0
    assert main(["localize", "--run", str(run), "--data", str(data), "--allow-pickle",
                 "--out", str(pred)]) == 0
    dets = load_results(pred)
    test_ids = {v for v in json.loads(pred.read_text())["results"]}
    assert len(dets) > 0 and all(v.startswith("video_test_") for v in test_ids)
    out_json = tmp_path / "map.json"
    assert main(["evaluate", "--gt", str(data), "--allow-pickle", "--pred", str(pred),
                 "--protocol", "thumos14", "--json", str(out_json)]) == 0
    rep = json.loads(out_json.read_text())
    assert rep["protocol"] == "thumos14" and "0.5" in rep["map"]


def test_inference_device_names_and_unusable_devices():
    from acn.errors import AcnError
    from acn.pipeline import inference_device

    assert inference_device("cpu") == torch.device("cpu")
    for bad, msg in (("tpu", "not a device name"), ("mps", "only cpu and cuda")):
        with pytest.raises(AcnError, match=msg):
            inference_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(AcnError, match="no CUDA device is visible"):
            inference_device("cuda")


def test_localize_device_option(tiny, tiny_folder, trained, tmp_path, capsys):
    # localize.device=cpu is the default path; an unusable device fails before any output
    import copy

    model, run = trained
    vid = [v.id for v in tiny.subset("test")][:2]
    m2 = copy.copy(model)
    m2.cfg = copy.deepcopy(model.cfg)
    m2.cfg["localize"]["device"] = "cpu"
    a = model.localize(tiny, vid, ["fused"], progress=False)
    b = m2.localize(tiny, vid, ["fused"], progress=False)
    assert a == b and sum(len(d) for d in a["fused"].values()) > 0
    if not torch.cuda.is_available():
        out = tmp_path / "p.json"
        assert main(["localize", "--run", str(run), "--data", str(tiny_folder), "--out", str(out),
                     "--device", "cuda"]) == 2
        assert "no CUDA device is visible" in capsys.readouterr().err
        assert not out.exists()


def test_padding_buffers_are_not_pickled(tiny, trained):
    import copy
    import pickle

    model = trained[0]
    model.localize(tiny, [v.id for v in tiny.subset("test")][:2], ["fused"], progress=False)
    assert model._pad_buffers
    assert pickle.loads(pickle.dumps(model))._pad_buffers == {}
    assert copy.copy(model)._pad_buffers == {}
