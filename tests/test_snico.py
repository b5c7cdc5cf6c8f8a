"""CoLA's snippet contrast (acn.model.snico): mining against a direct computation, the loss."""

import numpy as np
import torch
from hypothesis import given, settings, strategies as st

from acn.model.snico import mine_snippets, snico_loss


def brute_bands(a: np.ndarray, erode: int, dilate: int) -> tuple[set, set]:
    """Hard-action and hard-background bands by direct windows (edges count as action)."""
    T = len(a)
    m = (a - a.min()) / (a.max() - a.min()) > 0.5
    inside = lambda i: m[i] if 0 <= i < T else True  # noqa: E731
    eroded = [all(inside(j) for j in range(i - erode // 2, i + (erode - 1) // 2 + 1))
              for i in range(T)]
    dilated = [any(0 <= j < T and m[j] for j in range(i - dilate // 2, i + (dilate - 1) // 2 + 1))
               for i in range(T)]
    return ({i for i in range(T) if m[i] and not eroded[i]},
            {i for i in range(T) if dilated[i] and not m[i]})


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-5, 5, allow_nan=False, width=32), min_size=20, max_size=120),
       st.integers(1, 5), st.integers(1, 8))
def test_mining_matches_brute_force(values, erode, dilate):
    a = np.asarray(values, dtype=np.float32)
    got = mine_snippets(torch.from_numpy(a), erode=erode, dilate=dilate)
    T = len(a)
    if a.max() <= a.min():
        assert got is None
        return
    band_a, band_b = brute_bands(a, erode, dilate)
    if not band_a or not band_b:
        assert got is None
        return
    ea, eb, ha, hb = (set(x.tolist()) for x in got)
    k_easy, k_hard = T // 5, T // 20
    assert len(ea) == len(eb) == k_easy
    assert min(a[list(ea)]) >= max(np.delete(a, list(ea))) - 1e-6   # the top k
    assert max(a[list(eb)]) <= min(np.delete(a, list(eb))) + 1e-6   # the bottom k
    assert ha <= band_a and hb <= band_b
    assert len(ha) == min(k_hard, len(band_a)) and len(hb) == min(k_hard, len(band_b))
    # the least typical of each band
    assert max(a[list(ha)]) <= min([a[i] for i in band_a - ha] or [np.inf]) + 1e-6
    assert min(a[list(hb)]) >= max([a[i] for i in band_b - hb] or [-np.inf]) - 1e-6


def _video(T=200):
    a = torch.zeros(T)
    a[60:120] = 4.0
    a += 0.05 * torch.randn(T, generator=torch.Generator().manual_seed(0))
    return a


def test_loss_lower_when_embedding_separates_action_from_background():
    a = _video()
    act = (a > 2).float()
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(1, 200, 8, generator=g)
    direction = torch.zeros(8)
    direction[0] = 1.0
    separated = noise * 0.1 + (act[:, None] * 2 - 1) * direction  # action +e0, background -e0
    mixed = noise
    mask = torch.ones(1, 200, dtype=torch.bool)
    assert snico_loss(separated, a[None], mask) < snico_loss(mixed, a[None], mask) - 1.0


def test_gradient_reaches_embedding_and_padding_is_ignored():
    a = _video()
    emb = torch.randn(2, 260, 8, requires_grad=True)
    mask = torch.zeros(2, 260, dtype=torch.bool)
    mask[:, :200] = True
    act = torch.zeros(2, 260)
    act[:, :200] = a
    act[:, 200:] = 100.0  # padding would be "easy action" were it read
    loss = snico_loss(emb, act, mask)
    loss.backward()
    assert emb.grad[:, :200].abs().sum() > 0
    assert emb.grad[:, 200:].abs().sum() == 0


def test_video_too_short_or_flat_adds_nothing():
    emb = torch.randn(1, 10, 4, requires_grad=True)
    mask = torch.ones(1, 10, dtype=torch.bool)
    loss = snico_loss(emb, torch.arange(10.0)[None], mask)  # T // 20 == 0
    assert float(loss.detach()) == 0.0
    loss.backward()  # still differentiable
    flat = snico_loss(torch.randn(1, 100, 4), torch.ones(1, 100), torch.ones(1, 100, dtype=torch.bool))
    assert float(flat) == 0.0
