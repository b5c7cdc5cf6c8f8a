"""The self-trained second stage: pseudo-labels from detections, and the snippet classifier."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acn.train.second_stage import (
    IGNORE,
    cas_pseudo_labels,
    label_quality,
    pseudo_labels,
    snippet_cas,
    train_snippet_net,
    truth_labels,
)

from conftest import tiny_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def brute_labels(segs, scores, labels, T, vc, C, cas, frac, edge, bgc):
    """pseudo_labels, snippet by snippet, from its docstring."""
    dets = [(s, e, sc, c) for (s, e), sc, c in zip(segs, scores, labels) if c in vc]
    best = {c: max(sc for _, _, sc, cc in dets if cc == c) for c in {d[3] for d in dets}}
    conf = [(s, e, c) for s, e, sc, c in dets if sc >= frac * best[c]]
    out = []
    for t in range(T):
        x = t + 0.5
        claimed = {c for s, e, c in conf if s <= x < e}
        lab = claimed.pop() if len(claimed) == 1 else IGNORE
        covered = any(s <= x < e for s, e, _, _ in dets)
        if not covered and set(best) >= set(vc):
            if cas is None or not vc:
                lab = C
            else:
                m = max(cas[c].max() for c in vc)
                if max(cas[c][t] for c in vc) < bgc * max(m, 1e-12):
                    lab = C
        if any(abs(x - b) < edge for s, e, _ in conf for b in (s, e)):
            lab = IGNORE
        out.append(lab)
    return np.array(out)


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 30), st.integers(0, 6), st.integers(1, 4), st.data())
def test_pseudo_labels_match_a_snippet_by_snippet_reading(T, n, C, data):
    segs = np.array([sorted(data.draw(st.lists(st.floats(0, T, width=32), min_size=2,
                                                max_size=2))) for _ in range(n)],
                    dtype=np.float64).reshape(-1, 2)
    scores = np.array(data.draw(st.lists(st.floats(0.01, 2), min_size=n, max_size=n)))
    labels = np.array(data.draw(st.lists(st.integers(0, C - 1), min_size=n, max_size=n)),
                      dtype=np.int64)
    vc = sorted(set(data.draw(st.lists(st.integers(0, C - 1), min_size=1, max_size=C))))
    cas = data.draw(st.none() | st.just(np.random.default_rng(T).uniform(0, 1, (C, T))))
    frac = data.draw(st.sampled_from([0.0, 0.5, 0.9]))
    edge = data.draw(st.integers(0, 2))
    got = pseudo_labels(segs, scores, labels, T, vc, C, cas, frac, edge, 0.3)
    np.testing.assert_array_equal(got, brute_labels(segs, scores, labels, T, vc, C, cas,
                                                    frac, edge, 0.3))


def test_pseudo_labels_by_hand():
    # class 0 at [2, 6) (score 1), a weak class-0 detection at [8, 10) (0.3: not confident),
    # a class-1 detection the video is not labelled with (ignored entirely)
    segs = np.array([[2, 6], [8, 10], [12, 14]], dtype=float)
    got = pseudo_labels(segs, np.array([1.0, 0.3, 1.0]), np.array([0, 0, 1]), 16, [0], 2,
                        None, 0.5, 1, 0.2)
    bg, ig = 2, IGNORE
    #                 0   1   2   3  4  5   6   7   8   9  10  11  12  13  14  15
    want = np.array([bg, ig, ig, 0, 0, ig, ig, bg, ig, ig, bg, bg, bg, bg, bg, bg])
    np.testing.assert_array_equal(got, want)
    # the video is also labelled with class 1, which has no detection: no background
    got = pseudo_labels(segs[:2], np.array([1.0, 0.3]), np.array([0, 0]), 16, [0, 1], 2)
    assert not (got == 2).any() and (got == 0).sum() == 2


def test_label_quality_counts():
    t = {"a": np.array([0, 0, 2, -1, 1]), "b": np.array([2, 2])}
    g = {"a": np.array([0, 2, 2, 0, 0]), "b": np.array([2, 1])}
    q = label_quality(t, g, 2)
    assert q["foreground_precision"] == pytest.approx(1 / 3)   # a: 0 ok, 0 wrong, 1 wrong
    assert q["foreground_recall"] == pytest.approx(1 / 4)      # true fg: a0, a3, a4, b1
    assert q["background_precision"] == pytest.approx(2 / 3)   # a2 ok, b0 ok, b1 wrong
    assert q["coverage"] == pytest.approx(6 / 7)
    np.testing.assert_array_equal(truth_labels([(1, 3, 0), (2.6, 4, 1)], 5, 2),
                                  [2, 0, 0, 1, 2])


def test_the_snippet_net_learns_clean_labels():
    from acn.model.normalize import feature_statistics

    ann, feats = tiny_dataset(n_train=24, n_test=8, dim=16, seed=3)
    C = len(ann.classes)
    ids = sorted(feats)
    truth = {v: truth_labels([(s.start * 25 / 16, s.end * 25 / 16, ann.classes.index(s.label))
                              for s in ann.videos[v].segments], feats[v][0].shape[0], C)
             for v in ids}
    train, test = ids[:24], ids[24:]
    stats = [feature_statistics(feats[v][k] for v in train) for k in (0, 1)]
    net, hist = train_snippet_net(lambda v: feats[v], {v: truth[v] for v in train}, C, stats,
                                  {"hidden": 32, "epochs": 30, "dropout": 0.1}, seed=0)
    assert hist[-1] < 0.5 * hist[0]
    correct = []
    for v in test:  # background where p(background) > 0.5, else the most likely class
        o = snippet_cas(net, *feats[v])
        correct.append(np.where(o.attention > 0.5, o.scp.argmax(0), C) == truth[v])
    acc = np.concatenate(correct).mean()
    assert acc > 0.85, acc


# -- the second stage acn train runs: CAS pseudo-labels and the snippet loss ------------------
def brute_cas_labels(scp, vc, C, fg_frac, bg_frac):
    """cas_pseudo_labels, snippet by snippet, from its docstring."""
    vc = sorted(set(vc))
    if not vc:
        return np.full(scp.shape[1], IGNORE)
    top_all = max(max(scp[c][t] for c in vc) for t in range(scp.shape[1]))
    out = []
    for t in range(scp.shape[1]):
        fg = [c for c in vc if scp[c].max() > 0 and scp[c][t] >= fg_frac * scp[c].max()]
        bg = max(scp[c][t] for c in vc) < bg_frac * top_all
        out.append(fg[0] if len(fg) == 1 and not bg else C if bg and not fg else IGNORE)
    return np.array(out)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 25), st.integers(1, 4), st.data())
def test_cas_pseudo_labels_match_a_snippet_by_snippet_reading(T, C, data):
    scp = np.array(data.draw(st.lists(st.lists(st.sampled_from([0.0, 0.05, 0.1, 0.3, 0.5, 0.9, 1.0]),
                                                min_size=T, max_size=T), min_size=C, max_size=C)))
    vc = data.draw(st.lists(st.integers(0, C - 1), max_size=C))
    fg_frac = data.draw(st.sampled_from([0.5, 0.9, 1.0]))
    bg_frac = data.draw(st.sampled_from([0.0, 0.1, 0.5]))
    got = cas_pseudo_labels(scp, vc, C, fg_frac, bg_frac)
    np.testing.assert_array_equal(got, brute_cas_labels(scp, vc, C, fg_frac, bg_frac))


def test_cas_pseudo_labels_by_hand():
    scp = np.array([[0.1, 0.95, 1.0, 0.5, 0.02, 0.01],   # class 0 (labelled)
                    [0.9, 0.9, 0.9, 0.9, 0.9, 0.9]])     # class 1 (not labelled): ignored
    np.testing.assert_array_equal(cas_pseudo_labels(scp, [0], 2, 0.9, 0.1),
                                  [IGNORE, 0, 0, IGNORE, 2, 2])


def test_snippet_loss_is_the_labelled_snippets_cross_entropy():
    import torch

    from acn.model.base import BaseForward, snippet_loss

    scp = torch.tensor([[[0.7, 0.2, 0.5], [0.3, 0.8, 0.5]]])  # (1, C=2, T=3)
    att = torch.tensor([[2.0, -1.0, 0.0]])
    out = BaseForward(scp=scp, attention=att, video_scores=torch.zeros(1, 2),
                      video_logits=torch.zeros(1, 2))
    targets = torch.tensor([[0, 2, 1]])  # class 0, background, class 1 (masked away)
    mask = torch.tensor([[True, True, False]])
    want = -np.log(0.7) + (np.log1p(np.exp(-2.0)) + np.log1p(np.exp(-1.0))) / 2
    assert snippet_loss(out, targets, mask).item() == pytest.approx(want, rel=1e-5)
    nothing = torch.full((1, 3), IGNORE)
    assert snippet_loss(out, nothing, mask).item() == 0.0
    # a batch's loss is the mean of its videos' (what a batch split over processes sums to)
    two = BaseForward(scp=torch.cat([scp, scp.flip(2)]), attention=torch.cat([att, -att]),
                      video_scores=torch.zeros(2, 2), video_logits=torch.zeros(2, 2))
    t2 = torch.tensor([[0, 2, 1], [1, 1, 2]])
    m2 = torch.tensor([[True, True, False], [True, True, True]])
    singles = [snippet_loss(BaseForward(scp=two.scp[i:i + 1], attention=two.attention[i:i + 1],
                                        video_scores=torch.zeros(1, 2),
                                        video_logits=torch.zeros(1, 2)),
                            t2[i:i + 1], m2[i:i + 1]).item() for i in range(2)]
    assert snippet_loss(two, t2, m2).item() == pytest.approx(np.mean(singles), rel=1e-6)


def test_acn_train_runs_the_second_stage_and_logs_its_labels(tiny, fast_cfg, tmp_path):
    from acn.config import merge, parse_set
    from acn.pipeline import ACN

    cfg = merge(fast_cfg, parse_set(["second_stage.rounds=1", "select.validation_fraction=0",
                                     "base.epochs=10"]), "test")
    model = ACN(cfg)
    log = model.fit(tiny, tmp_path / "run", progress=False, stage="base")
    info = log["second_stage"]["round_1"]
    # the tiny data's planted actions are easy: the labels are mostly right
    assert info["videos_with_segments"] == 24
    assert info["foreground_precision"] > 0.7, info
    assert 0 < info["labelled"] <= 1
    ck = tmp_path / "run" / "checkpoints"
    assert (ck / "rgb_base_round0.pt").is_file() and (ck / "rgb_base.pt").is_file()
    # the final models differ from round 0's: they were trained again, on the labels
    import torch
    a = torch.load(ck / "rgb_base_round0.pt", weights_only=True)
    b = torch.load(ck / "rgb_base.pt", weights_only=True)
    sa, sb = a["state_dict"], b["state_dict"]
    assert any(not torch.equal(sa[k], sb[k]) for k in sa)


def test_train_base_rejects_pseudo_labels_of_the_wrong_length(tiny):
    from acn.errors import AcnError
    from acn.train.base import train_base

    ids = [v.id for v in tiny.subset("validation")][:4]
    bad = {ids[0]: np.zeros(3, dtype=np.int64)}
    with pytest.raises(AcnError, match=f"pseudo-labels of video {ids[0]} have 3 snippets"):
        train_base(tiny, ids, "rgb", {"epochs": 1, "hidden": 8}, seed=0, progress=False,
                   targets=bad, target_weight=1.0)


def test_resume_reuses_a_finished_second_stage_and_redoes_an_unfinished_one(tiny, fast_cfg,
                                                                           tmp_path):
    from acn.config import merge, parse_set
    from acn.pipeline import ACN

    cfg = merge(fast_cfg, parse_set(["second_stage.rounds=1", "select.validation_fraction=0",
                                     "base.epochs=5"]), "test")
    run = tmp_path / "run"
    ACN(cfg).fit(tiny, run, progress=False, stage="base")
    ck = run / "checkpoints"
    final = {s: (ck / f"{s}_base.pt").stat().st_mtime_ns for s in ("rgb", "flow")}
    ACN(cfg).fit(tiny, run, progress=False, stage="base", resume=True)
    assert {s: (ck / f"{s}_base.pt").stat().st_mtime_ns for s in final} == final
    # a run stopped between the last round's two streams: Flow's final model is missing, and
    # RGB's is not reused beside a Flow model of another round: both rounds run again
    (ck / "flow_base.pt").unlink()
    log = ACN(cfg).fit(tiny, run, progress=False, stage="base", resume=True)
    assert (ck / "flow_base.pt").is_file()
    assert (ck / "rgb_base.pt").stat().st_mtime_ns != final["rgb"]
    assert "round_1" in log["second_stage"]
