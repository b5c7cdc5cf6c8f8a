"""Input standardisation: statistics, scale-free models, checkpoints, and a scale-free fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from acn.train import base as bt
from acn.data.features import Dataset, MemoryStore
from acn.errors import AcnError
from acn.model.base import BaseModel
from acn.model.normalize import STD_FLOOR, InputNorm, feature_statistics
from acn.model.regression import RegressionNets


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 4), d=st.integers(1, 6), scale=st.floats(1e-3, 1e3),
       offset=st.floats(-1e3, 1e3), seed=st.integers(0, 2**16))
def test_statistics_match_numpy_on_the_concatenation(n, d, scale, offset, seed):
    rng = np.random.default_rng(seed)
    arrays = [(rng.standard_normal((int(rng.integers(1, 30)), d)) * scale + offset)
              .astype(np.float32) for _ in range(n)]
    mean, std = feature_statistics(iter(arrays))
    x = np.concatenate(arrays).astype(np.float64)
    ref_std = x.std(0)
    floor = max(STD_FLOOR * np.median(ref_std), 1e-12)
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-5, atol=1e-5 * scale)
    np.testing.assert_allclose(std, np.maximum(ref_std, floor), rtol=1e-4, atol=1e-6 * scale)


def test_constant_dimension_is_floored_not_blown_up():
    x = np.ones((50, 3), np.float32)
    x[:, 0] = np.random.default_rng(0).standard_normal(50)
    mean, std = feature_statistics([x])
    assert std[1] > 0 and std[2] > 0
    norm = InputNorm(3)
    norm.set_statistics(mean, std)
    y = norm(torch.from_numpy(x)[None])
    assert torch.isfinite(y).all() and y[..., 1:].abs().max() == 0


def test_statistics_errors():
    with pytest.raises(AcnError, match="no snippet"):
        feature_statistics([])
    norm = InputNorm(4)
    with pytest.raises(AcnError, match="shapes"):
        norm.set_statistics(np.zeros(3), np.ones(3))
    with pytest.raises(AcnError, match="positive std"):
        norm.set_statistics(np.zeros(4), np.zeros(4))


def _affine(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return x * a + b


def test_base_model_with_input_norm_is_scale_free_and_padding_safe():
    torch.manual_seed(0)
    D, C = 12, 4
    model = BaseModel(D, C, hidden=16, kernel_size=3, dropout=0.0, head="topk_mil",
                      input_norm=True).eval()
    x = torch.rand(2, 20, D)
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[1, 13:] = False
    mean, std = x[mask].mean(0), x[mask].std(0)
    model.set_input_statistics(mean.numpy(), std.numpy())
    a, b = torch.rand(D) * 100 + 0.01, torch.randn(D) * 50
    other = BaseModel(**model.kwargs).eval()
    other.load_state_dict(model.state_dict())
    other.set_input_statistics((mean * a + b).numpy(), (std * a).numpy())
    with torch.no_grad():
        r1 = model(x, mask)
        r2 = other(_affine(x, a, b), mask)
        alone = model(x[1:, :13], mask[1:, :13])
    torch.testing.assert_close(r1.scp[:, :, :13], r2.scp[:, :, :13], rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(r1.video_scores, r2.video_scores, rtol=1e-3, atol=1e-4)
    # a padded video's outputs equal its outputs alone (padding is zero after the norm)
    torch.testing.assert_close(r1.scp[1:, :, :13], alone.scp, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(r1.video_scores[1:], alone.video_scores, rtol=1e-5, atol=1e-6)


def test_regression_nets_with_input_norm_scale_free_in_both_layouts():
    torch.manual_seed(1)
    D = 10
    nets = RegressionNets(D, [2, 4], filters=8, zero_init=False, input_norm=True)
    x = torch.rand(2, 17, D)
    lengths = torch.tensor([17, 11])
    mean, std = x.reshape(-1, D).mean(0), x.reshape(-1, D).std(0)
    nets.set_input_statistics(mean.numpy(), std.numpy())
    a, b = torch.rand(D) * 20 + 0.05, torch.randn(D) * 10
    other = RegressionNets(**nets.kwargs(), zero_init=False)
    other.load_state_dict(nets.state_dict())
    other.set_input_statistics((mean * a + b).numpy(), (std * a).numpy())
    y = _affine(x, a, b)
    y[1, 11:] = 0  # zero-padded as pad_batch writes it
    train = nets(x, lengths)
    with torch.no_grad():
        infer = other(y, lengths, zero_padded=True)
    for k in train:
        torch.testing.assert_close(train[k][1, :, :11].detach(), infer[k][1, :, :11],
                                   rtol=1e-3, atol=1e-4)
        torch.testing.assert_close(train[k][0].detach(), infer[k][0], rtol=1e-3, atol=1e-4)


def test_checkpoints_keep_the_statistics_and_old_ones_still_load(tmp_path):
    model = bt.build_model(bt.resolve_base_config({"hidden": 8}), 6, 3,
                           input_stats=(np.arange(6.0), np.full(6, 2.0)))
    bt.save_base_checkpoint(tmp_path / "new.pt", model, {"stream": "rgb"})
    back, _ = bt.load_base_checkpoint(tmp_path / "new.pt")
    assert back.norm is not None
    torch.testing.assert_close(back.norm.mean, torch.arange(6.0))
    torch.testing.assert_close(back.norm.inv_std, torch.full((6,), 0.5))
    old = bt.build_model(bt.resolve_base_config({"hidden": 8}), 6, 3)  # as before the norm
    assert "input_norm" not in old.kwargs and old.norm is None
    bt.save_base_checkpoint(tmp_path / "old.pt", old, {})
    assert bt.load_base_checkpoint(tmp_path / "old.pt")[0].norm is None
    nets = RegressionNets(6, [2])
    assert "input_norm" not in nets.kwargs() and nets.norm is None
    with pytest.raises(ValueError, match="without input_norm"):
        nets.set_input_statistics(np.zeros(6), np.ones(6))


def _scaled(ds: Dataset, rgb: tuple[float, float], flow: tuple[float, float]) -> Dataset:
    feats = {}
    for v in ds.annotations.videos:
        r, f = ds.features(v)
        feats[v] = ((r * rgb[0] + rgb[1]).astype(np.float32),
                    (f * flow[0] + flow[1]).astype(np.float32))
    return Dataset(ds.annotations, MemoryStore(feats))


def test_base_training_is_scale_free(tiny):
    # the same data at 1/50 scale with an offset (Flow) and 40x (RGB): standardised input
    # makes training see the same numbers, so the models agree
    other = _scaled(tiny, (40.0, 0.0), (0.02, 3.0))
    ids = [v.id for v in tiny.subset("validation")]
    cfg = {"epochs": 5, "hidden": 16, "dropout": 0.0}
    maps = []
    for ds in (tiny, other):
        outs = {}
        for s in ("rgb", "flow"):
            model, _ = bt.train_base(ds, ids, s, cfg, seed=0, progress=False,
                                     input_stats=bt.stream_statistics(ds, ids, s))
            outs[s] = bt.predict_base(model, ds, ids, s)
        maps.append(outs)
    for s in ("rgb", "flow"):
        for v in ids:
            np.testing.assert_allclose(maps[0][s][v].video_scores, maps[1][s][v].video_scores,
                                       atol=2e-3)
