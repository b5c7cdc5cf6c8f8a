"""The attention term of ACN's scoring (``localize.attention_weight``): the outer-inner
contrast of the base model's class-agnostic attention, against direct computations."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from acn.config import resolve
from acn.errors import AcnError
from acn.localize.segments import attention_contrast, attention_probability, cas_candidates
from acn.localize.video import attention_weight, blend_alpha, score_candidates


def integral(f: np.ndarray, a: float, b: float) -> float:
    """int_a^b of the piecewise-constant signal f (snippet i covers [i, i + 1))."""
    i = np.arange(len(f))
    return float(np.sum(f * np.clip(np.minimum(i + 1, b) - np.maximum(i, a), 0, None)))


def brute_contrast(att: np.ndarray, s: float, e: float, inflation: float) -> float:
    p = 1.0 / (1.0 + np.exp(-att.astype(np.float64)))
    T = len(p)
    pad = inflation * (e - s)
    os_, oe = max(s - pad, 0.0), min(e + pad, float(T))
    inner = (integral(p, s, e) / (e - s) if e - s > 1e-6
             else p[min(max(int(np.floor(s)), 0), T - 1)])
    if s <= 0 and e >= T:  # the whole video: no surroundings, no contrast
        return 0.0
    outer_len = (s - os_) + (oe - e)
    outer = ((integral(p, os_, s) + integral(p, e, oe)) / outer_len if outer_len > 1e-6
             else 0.0)
    return inner - outer


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.integers(0, 2**31 - 1), st.sampled_from([0.0, 0.25, 0.5]))
def test_attention_contrast_matches_brute_force(T, seed, inflation):
    rng = np.random.default_rng(seed)
    att = rng.normal(0, 3, T).astype(np.float32)
    n = 12
    s = rng.uniform(0, T, n)
    e = np.minimum(s + rng.uniform(0, T, n), T)
    e[:2] = s[:2] + rng.uniform(0, 1e-7, 2)  # (nearly) empty segments: the value at the point
    s[2], e[2] = 0.0, float(T)               # the whole video: contrast 0
    got = attention_contrast(att, torch.from_numpy(s), torch.from_numpy(e), inflation)
    want = [brute_contrast(att, a, b, inflation) for a, b in zip(s, e)]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-9, atol=1e-9)
    assert got.dtype == torch.float64 and (got.abs() <= 1 + 1e-12).all()


def test_attention_probability_is_the_sigmoid_without_overflow():
    a = np.array([-1000.0, -30.0, -1.5, 0.0, 2.0, 40.0, 1000.0])
    with np.errstate(over="raise"):
        p = attention_probability(a)
    np.testing.assert_allclose(p[1:-1], 1.0 / (1.0 + np.exp(-a[1:-1])))
    assert p[0] == 0.0 and p[-1] == 1.0


def test_attention_contrast_prefers_the_segment_the_attention_marks():
    T = 40
    att = np.full(T, -4.0, np.float32)
    att[10:20] = 4.0  # an action at [10, 20)
    s = torch.tensor([10.0, 5.0, 12.0, 25.0])
    e = torch.tensor([20.0, 25.0, 18.0, 35.0])
    c = attention_contrast(att, s, e).numpy()
    assert c.argmax() == 0 and c[3] == pytest.approx(0.0, abs=1e-12)
    assert c[0] > 0.9  # inside ~sigmoid(4), outside ~sigmoid(-4)


def scene(T: int = 60, seed: int = 0):
    """A video with two classes whose SCP is flat over an action and its context, and an
    attention that marks only the action: SCP [8, 30) for class 0, the action [14, 22)."""
    rng = np.random.default_rng(seed)
    scp = np.full((2, T), 0.05, np.float32)
    scp[0, 8:30] = 0.8 + 0.05 * rng.random(22)
    scp[1, 40:50] = 0.5
    att = np.full(T, -3.0, np.float32)
    att[14:22] = 3.0
    feats = [torch.from_numpy(rng.normal(size=(T, d)).astype(np.float32)) for d in (6, 4)]
    out = SimpleNamespace(scp=scp, attention=att, video_scores=np.array([0.9, 0.4], np.float32))
    return feats, out


def config(*extra: str) -> dict:
    return resolve(overrides=["acn.proposals=cas", "localize.whole_video=off",
                              "localize.video_score_weight=0.3", "acn.alpha=0.8",
                              "acn.lc_features=standardize", *extra])


def scored(cfg, feats, out):
    return score_candidates(cfg, feats, out, {8: None}, float("-inf"), group_weights=[0.5, 0.5])


def test_attention_weight_adds_its_multiple_of_the_contrast():
    feats, out = scene()
    seg0, sc0, lab0, _ = scored(config("localize.attention_weight=0"), feats, out)
    for w in (0.4, 1.5):
        seg, sc, lab, _ = scored(config(f"localize.attention_weight={w}",
                                        "localize.attention_candidates=false"), feats, out)
        torch.testing.assert_close(seg, seg0)  # same candidates without attention candidates
        assert torch.equal(lab, lab0)
        want = sc0 + w * attention_contrast(out.attention, seg[:, 0], seg[:, 1], 0.25)
        torch.testing.assert_close(sc, want)


def test_attention_candidates_add_the_segments_of_the_attention_weighted_scp():
    feats, out = scene()
    seg0, _, lab0, _ = scored(config("localize.attention_weight=0"), feats, out)
    seg, sc, lab, _ = scored(config("localize.attention_weight=0.8"), feats, out)
    have = {(int(c), round(float(a), 6), round(float(b), 6)) for (a, b), c in zip(seg, lab)}
    before = {(int(c), round(float(a), 6), round(float(b), 6)) for (a, b), c in zip(seg0, lab0)}
    weighted = out.scp * attention_probability(out.attention)[None].astype(np.float32)
    rows, s, e = cas_candidates(weighted, config()["acn"]["cas_thresholds"],
                                config()["acn"]["cas_min_length"], True)
    new = {(int(r), round(float(a), 6), round(float(b), 6)) for r, a, b in zip(rows, s, e)}
    assert before < have and have == before | new
    # the SCP alone never isolates the action [14, 22); the weighted SCP does, and with the
    # attention weighed above the SCP's contrast it ranks first
    assert not any(abs(a - 14) < 1 and abs(b - 22) < 1 for _, a, b in before)
    assert any(abs(a - 14) < 1 and abs(b - 22) < 1 for _, a, b in new)
    seg, sc, lab, _ = scored(config("localize.attention_weight=3"), feats, out)
    top = seg[sc.argmax()].numpy()
    assert lab[sc.argmax()] == 0 and abs(top[0] - 14) < 1 and abs(top[1] - 22) < 1


def test_alpha_blend_stays_exact_with_the_attention_term():
    feats, out = scene(seed=3)

    def at(alpha):
        return scored(config(f"acn.alpha={alpha}", "localize.attention_weight=0.8"), feats, out)

    ends = at(1.0), at(0.0)
    for alpha in (0.5, 0.7, 0.9):
        for g, w in zip(blend_alpha(*ends, alpha), at(alpha)):
            torch.testing.assert_close(g, w)


def test_whole_video_first_stays_above_every_other_score_with_attention():
    feats, out = scene()
    seg, sc, lab, whole = scored(config("localize.whole_video=first",
                                        "localize.attention_weight=3"), feats, out)
    assert whole.any() and sc[whole].min() > sc[~whole].max()


def test_scored_whole_video_proposal_gains_nothing_from_the_attention_term():
    # the whole video has no surroundings to contrast its attention with; every other
    # candidate's score moves by the weight times its contrast
    feats, out = scene()
    seg0, sc0, lab0, whole0 = scored(config("localize.whole_video=scored"), feats, out)
    seg, sc, lab, whole = scored(config("localize.whole_video=scored",
                                        "localize.attention_weight=3",
                                        "localize.attention_candidates=false"), feats, out)
    torch.testing.assert_close(seg, seg0)
    assert whole.any() and torch.equal(whole, whole0)
    torch.testing.assert_close(sc[whole], sc0[whole])
    want = sc0[~whole] + 3 * attention_contrast(out.attention, seg[~whole, 0], seg[~whole, 1],
                                                config()["acn"]["inflation"])
    torch.testing.assert_close(sc[~whole], want)
    assert not torch.allclose(sc[~whole], sc0[~whole])


@pytest.mark.parametrize("bad", [-0.1, True, "high"])
def test_attention_weight_must_be_a_number_at_least_zero(bad):
    with pytest.raises(AcnError, match="attention_weight"):
        attention_weight({"attention_weight": bad})


def test_attention_weight_config_is_checked_and_nullable():
    assert resolve()["localize"]["attention_weight"] is None
    assert resolve(overrides=["localize.attention_weight=0.4"])["localize"][
        "attention_weight"] == 0.4
    with pytest.raises(AcnError, match="attention_weight"):
        resolve(overrides=["localize.attention_weight=strong"])


def test_attention_weights_candidates_are_checked():
    from acn import selection

    assert selection.check_attention_weights([0.8, 0, 0.4, 0.4]) == [0.0, 0.4, 0.8]
    for bad in ([], [-1.0], [True]):
        with pytest.raises(AcnError, match="select.attention_weights"):
            selection.check_attention_weights(bad)


def test_without_a_carved_split_the_weight_is_the_family_fallback_and_ties_go_to_zero():
    from acn import selection
    from acn.pipeline import ACN
    from acn.train.select import fill_unchosen

    model = ACN(resolve())
    assert model.cfg["localize"]["attention_weight"] is None
    fill_unchosen(model)
    assert model.cfg["localize"]["attention_weight"] == 0.4
    # on a carved split a lead under the tolerance keeps the paper's scoring
    scores = {(0.0,): 0.500, (0.4,): 0.503, (0.8,): 0.520}
    assert selection.best_choice(scores, (selection.ATTENTION_PREFERRED,), 0.005) == (0.8,)
    scores[(0.8,)] = 0.504
    assert selection.best_choice(scores, (selection.ATTENTION_PREFERRED,), 0.005) == (0.0,)
