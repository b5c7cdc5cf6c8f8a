"""DELU-style evidential learning (acn.model.evidential): each piece against a direct
computation, and training with it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from acn.errors import AcnError
from acn.model.evidential import (course_weights, evidential_video_loss, suppressed_logits,
                                  topk_by_attention, uncertainty_guide_loss)
from acn.train.base import predict_base, resolve_base_config, train_base
from acn.train.outputs import classification_map
from test_base_model import FAST, tiny_dataset


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def brute_video_loss(logits: list[float], labels: list[float]) -> float:
    alpha = [math.exp(min(max(v, -10.0), 10.0)) + 1.0 for v in logits]
    S = sum(alpha)
    u = len(alpha) / S
    pos = [c for c, y in enumerate(labels) if y > 0]
    inv = sum(1.0 / alpha[c] for c in pos)
    return sum((1 - u) * len(pos) * (1.0 / alpha[c]) / inv * (math.log(S) - math.log(alpha[c]))
               for c in pos)


def _batch(seed: int, B: int, C: int, T: int):
    g = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(B, C, T, generator=g, dtype=torch.float64)
    att = 2 * torch.randn(B, T, generator=g, dtype=torch.float64)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    mask = torch.arange(T)[None] < lengths[:, None]
    return logits, att, mask


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 4), st.integers(2, 6), st.integers(1, 30))
def test_suppression_and_topk_match_direct_computation(seed, B, C, T):
    logits, att, mask = _batch(seed, B, C, T)
    supp = suppressed_logits(logits, att)
    k = torch.randint(1, T + 1, (B,), generator=torch.Generator().manual_seed(seed))
    k = torch.minimum(k, mask.sum(1))
    got = topk_by_attention(supp, att, mask, k)
    for b in range(B):
        for t in range(T):
            low = min(logits[b, :, t].tolist())
            for c in range(C):
                want = _sig(att[b, t].item()) * (logits[b, c, t].item() - low) + low
                assert supp[b, c, t].item() == pytest.approx(want, abs=1e-9)
        real = [t for t in range(T) if mask[b, t]]
        top = sorted(real, key=lambda t: -att[b, t].item())[: int(k[b])]
        for c in range(C):
            want = sum(supp[b, c, t].item() for t in top) / int(k[b])
            assert got[b, c].item() == pytest.approx(want, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-15, 15, allow_nan=False), min_size=2, max_size=8), st.data())
def test_video_loss_matches_direct_computation(logits, data):
    C = len(logits)
    labels = data.draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=C, max_size=C)
                       .filter(lambda y: sum(y) > 0))
    got = evidential_video_loss(torch.tensor([logits], dtype=torch.float64),
                                torch.tensor([labels], dtype=torch.float64))
    assert got.shape == (1,)
    assert got.item() == pytest.approx(brute_video_loss(logits, labels), rel=1e-9, abs=1e-12)
    assert got.item() >= 0


def test_video_loss_falls_as_the_labelled_class_gains_evidence():
    labels = torch.tensor([[0.0, 1.0, 0.0]])
    losses = [evidential_video_loss(torch.tensor([[0.0, v, 0.0]]), labels).item()
              for v in (-2.0, 0.0, 2.0, 5.0)]
    assert all(a > b for a, b in zip(losses, losses[1:]))
    # and its gradient pushes the labelled logit up, the others down
    x = torch.tensor([[0.5, 0.5, 0.5]], requires_grad=True)
    evidential_video_loss(x, labels).sum().backward()
    assert x.grad[0, 1] < 0 < x.grad[0, 0] and x.grad[0, 2] > 0


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 3), st.integers(1, 25),
       st.floats(0, 1), st.floats(0, 1))
def test_course_weights_match_direct_computation(seed, B, T, progress, amplitude):
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(B, T, generator=g, dtype=torch.float64)
    mask = torch.arange(T)[None] < torch.randint(1, T + 1, (B,), generator=g)[:, None]
    got = course_weights(u, mask, progress, amplitude)
    for b in range(B):
        real = [t for t in range(T) if mask[b, t]]
        order = sorted(real, key=lambda t: u[b, t].item())
        n = len(real)
        for r, t in enumerate(order):
            theta = 2 * (r + 0.5) / n - 1
            want = 1 - amplitude * math.tanh(theta * (1 - 2 * progress))
            assert got[b, t].item() == pytest.approx(want, abs=1e-9)
        for t in range(T):
            if not mask[b, t]:
                assert got[b, t].item() == 0.0


def test_course_moves_from_certain_to_uncertain_snippets():
    u = torch.tensor([[0.1, 0.5, 0.9]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    start, middle, end = (course_weights(u, mask, p)[0] for p in (0.0, 0.5, 1.0))
    assert start[0] > start[1] > start[2]
    assert torch.allclose(middle, torch.ones(3))
    assert end[0] < end[1] < end[2]


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 3), st.integers(2, 5), st.integers(1, 20),
       st.floats(0, 1))
def test_guide_loss_matches_direct_computation(seed, B, C, T, progress):
    logits, att, mask = _batch(seed, B, C + 1, T)
    got = uncertainty_guide_loss(logits, att, mask, C, progress)
    supp = suppressed_logits(logits, att)
    for b in range(B):
        real = [t for t in range(T) if mask[b, t]]
        unc = {t: C / sum(math.exp(min(max(v, -10), 10)) + 1 for v in supp[b, :, t].tolist())
               for t in real}
        order = sorted(real, key=lambda t: unc[t])
        total = 0.0
        for r, t in enumerate(order):
            w = 1 - 0.7 * math.tanh((2 * (r + 0.5) / len(real) - 1) * (1 - 2 * progress))
            p = torch.softmax(logits[b, :, t], 0)[-1].item()
            total += w * abs(1 - _sig(att[b, t].item()) - p)
        assert got[b].item() == pytest.approx(total / len(real), rel=1e-7, abs=1e-9)


def test_config_rejects_a_negative_weight():
    assert resolve_base_config(None)["evidential_weight"] == 0.0
    with pytest.raises(AcnError, match="evidential_weight"):
        resolve_base_config({"evidential_weight": -1})


@pytest.mark.parametrize("background", [False, True])
def test_training_with_it_learns_and_changes_the_model(background):
    torch.set_num_threads(1)
    ds = tiny_dataset()
    train = [v.id for v in ds.subset("validation")]
    test = [v.id for v in ds.subset("test")]
    cfg = {**FAST, "head": "topk_mil", "background": background, "epochs": 15}
    plain, _ = train_base(ds, train, "rgb", cfg, seed=0, progress=False)
    model, info = train_base(ds, train, "rgb", {**cfg, "evidential_weight": 1.0}, seed=0,
                             progress=False)
    assert all(np.isfinite(info["losses"]))
    assert classification_map(predict_base(model, ds, test, "rgb"), ds, test) > 0.9
    # the term took part: same seed, different weights
    assert not all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(),
                                                     model.state_dict().values()))
