"""The weakly-supervised base model: pooling math, masking, training, storage."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from acn.batching import pad_batch
from acn.train.base import (
    DEFAULT_BASE_CONFIG,
    load_base_checkpoint,
    predict_base,
    resolve_base_config,
    save_base_checkpoint,
    train_base,
)
from acn.train.outputs import (
    BaseOutputs,
    average_precision,
    calibrate_attention,
    classification_map,
    load_outputs,
    save_outputs,
)
from acn.data.annotations import Annotations, Segment, Video
from acn.data.features import Dataset, MemoryStore
from acn.errors import AcnError
from acn.model.base import BaseModel, topk_counts, topk_mean, video_loss

FAST = {"hidden": 32, "epochs": 25, "batch_size": 8, "lr": 3e-3, "dropout": 0.3}


def tiny_dataset(n: int = 40, dim: int = 16, num_classes: int = 4, seed: int = 0,
                 fps: float = 25.0) -> Dataset:
    """n videos (half train, half test), one class each; action snippets shifted by a
    class-specific mean, background snippets pure noise."""
    rng = np.random.default_rng(seed)
    classes = [f"class{c}" for c in range(num_classes)]
    means = 2.0 * rng.normal(size=(num_classes, dim)).astype(np.float32)
    videos, feats = {}, {}
    for i in range(n):
        vid = f"vid{i:03d}"
        c = i % num_classes
        T = int(rng.integers(20, 90))
        s = int(rng.integers(0, T - 8))
        e = s + int(rng.integers(4, 9))
        x = rng.normal(size=(T, dim)).astype(np.float32)
        x[s:e] += means[c]
        flow = rng.normal(size=(T, dim)).astype(np.float32)
        flow[s:e] += means[(c + 1) % num_classes]
        sps = fps / 16
        videos[vid] = Video(vid, "validation" if i < n // 2 else "test", T / sps, (classes[c],),
                            [Segment(s / sps, e / sps, classes[c])], fps=fps)
        feats[vid] = (x, flow)
    return Dataset(Annotations(classes, videos, "validation", "test", "tiny"), MemoryStore(feats))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny models: thread synchronisation costs more than it saves, badly so on a busy machine.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def ds() -> Dataset:
    return tiny_dataset()


@pytest.fixture(scope="module")
def trained(ds):
    train = [v.id for v in ds.subset("validation")]
    return train_base(ds, train, "rgb", FAST, seed=0, progress=False)


# -- pooling math ----------------------------------------------------------------------------
def test_untrimmednet_pooling_matches_direct_computation():
    torch.manual_seed(0)
    model = BaseModel(6, 3, hidden=0, dropout=0.0).eval()
    x = torch.randn(1, 7, 6)
    out = model(x, torch.ones(1, 7, dtype=torch.bool))
    W, b = model.classifier.weight[:, :, 0], model.classifier.bias
    Wa, ba = model.selector.weight[0, :, 0], model.selector.bias
    logits = x[0] @ W.T + b  # (T, C)
    probs = torch.exp(logits) / torch.exp(logits).sum(1, keepdim=True)
    att = x[0] @ Wa + ba
    w = torch.exp(att) / torch.exp(att).sum()
    video = (w[:, None] * probs).sum(0)
    torch.testing.assert_close(out.scp[0], probs.T)
    torch.testing.assert_close(out.attention[0], att)
    torch.testing.assert_close(out.video_scores[0], video)
    assert out.video_scores.sum().item() == pytest.approx(1.0, abs=1e-6)
    # Loss: cross-entropy against the L1-normalised multi-hot labels.
    labels = torch.tensor([[1.0, 0.0, 1.0]])
    expected = -(0.5 * torch.log(video[0]) + 0.5 * torch.log(video[2]))
    torch.testing.assert_close(video_loss(out, labels), expected)


def test_topk_mean_matches_direct_computation():
    torch.manual_seed(1)
    logits = torch.randn(3, 2, 20)
    lengths = torch.tensor([20, 9, 1])
    mask = torch.arange(20)[None, :] < lengths[:, None]
    k = topk_counts(lengths, 8)
    assert k.tolist() == [3, 2, 1]  # max(1, ceil(T / 8))
    got = topk_mean(logits, mask, k)
    for b in range(3):
        for c in range(2):
            vals = sorted(logits[b, c, : lengths[b]].tolist(), reverse=True)[: k[b]]
            assert got[b, c].item() == pytest.approx(sum(vals) / len(vals), abs=1e-5)
    low = topk_mean(logits, mask, k, largest=False)
    for b in range(3):
        for c in range(2):
            vals = sorted(logits[b, c, : lengths[b]].tolist())[: k[b]]
            assert low[b, c].item() == pytest.approx(sum(vals) / len(vals), abs=1e-5)


# -- masking ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [
    {"head": "untrimmednet", "kernel_size": 3},
    {"head": "untrimmednet", "pool": "logits", "background": True},
    {"head": "topk_mil", "scp": "sigmoid", "attention": "branch", "kernel_size": 3},
    {"head": "topk_mil", "attention": "max_logit", "background": True},
])
def test_padding_does_not_change_a_videos_outputs(kwargs):
    torch.manual_seed(2)
    model = BaseModel(8, 5, hidden=16, dropout=0.5, **kwargs).eval()
    short = np.random.default_rng(0).normal(size=(11, 8)).astype(np.float32)
    longer = [np.random.default_rng(i).normal(size=(T, 8)).astype(np.float32) * 10
              for i, T in ((1, 40), (2, 25))]
    alone = model(*pad_batch([short]))
    batch = model(*pad_batch([longer[0], short, longer[1]]))
    torch.testing.assert_close(batch.scp[1, :, :11], alone.scp[0])
    torch.testing.assert_close(batch.attention[1, :11], alone.attention[0])
    torch.testing.assert_close(batch.video_scores[1], alone.video_scores[0])
    torch.testing.assert_close(batch.video_logits[1], alone.video_logits[0])


def test_zero_padded_skips_only_a_redundant_mask():
    # pad_batch zero-fills the padding, so zero_padded=True must give the same outputs
    torch.manual_seed(3)
    model = BaseModel(8, 5, hidden=16, kernel_size=3, head="topk_mil", scp="sigmoid").eval()
    arrays = [np.random.default_rng(i).normal(size=(T, 8)).astype(np.float32)
              for i, T in ((1, 40), (2, 11), (3, 25))]
    x, mask = pad_batch(arrays)
    a, b = model(x, mask), model(x, mask, zero_padded=True)
    for f in ("scp", "attention", "video_scores", "video_logits"):
        torch.testing.assert_close(getattr(b, f), getattr(a, f))


# -- training --------------------------------------------------------------------------------
def test_training_reaches_high_classification_map(ds, trained):
    model, info = trained
    test = [v.id for v in ds.subset("test")]
    outputs = predict_base(model, ds, test, "rgb")
    assert classification_map(outputs, ds, test) > 0.9
    assert info["losses"][-1] < info["losses"][0]
    assert info["num_videos"] == 20 and info["stream"] == "rgb"
    o = outputs[test[0]]
    T = ds.features(test[0])[0].shape[0]
    assert o.scp.shape == (4, T) and o.attention.shape == (T,) and o.video_scores.shape == (4,)
    assert o.scp.dtype == np.float32
    np.testing.assert_allclose(o.scp.sum(0), 1.0, atol=1e-5)
    # The attention should pick the planted action snippets out of the background.
    v = ds.video(test[0])
    seg = v.segments[0]
    s, e = round(v.seconds_to_snippets(seg.start)), round(v.seconds_to_snippets(seg.end))
    inside = np.zeros(T, bool)
    inside[s:e] = True
    assert o.attention[inside].mean() > o.attention[~inside].mean()


def test_topk_head_also_learns(ds):
    train, test = [v.id for v in ds.subset("validation")], [v.id for v in ds.subset("test")]
    model, _ = train_base(ds, train, "flow", {**FAST, "head": "topk_mil", "scp": "sigmoid"},
                          seed=0, progress=False)
    assert classification_map(predict_base(model, ds, test, "flow"), ds, test) > 0.9


def test_same_seed_same_weights_and_rng_untouched(ds):
    train = [v.id for v in ds.subset("validation")][:8]
    cfg = {**FAST, "epochs": 2}
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, _ = train_base(ds, train, "rgb", cfg, seed=7, progress=False)
    assert torch.rand(1).item() == before.item()  # the caller's RNG state is preserved
    b, _ = train_base(ds, train, "rgb", cfg, seed=7, progress=False)
    c, _ = train_base(ds, train, "rgb", cfg, seed=8, progress=False)
    for (k, va), vb, vc in zip(a.state_dict().items(), b.state_dict().values(),
                               c.state_dict().values()):
        assert torch.equal(va, vb), k
    assert not all(torch.equal(va, vc) for va, vc in zip(a.state_dict().values(),
                                                          c.state_dict().values()))


def test_long_videos_are_cropped_and_predicted_whole(ds):
    train = [v.id for v in ds.subset("validation")][:6]
    model, _ = train_base(ds, train, "rgb", {**FAST, "epochs": 1, "max_len": 10},
                          seed=0, progress=False)
    out = predict_base(model, ds, train, "rgb", batch_size=4)
    assert list(out) == train
    for vid in train:
        assert out[vid].scp.shape[1] == ds.features(vid)[0].shape[0]


def test_bad_inputs_raise_clear_errors(ds):
    train = [v.id for v in ds.subset("validation")]
    with pytest.raises(AcnError, match="unknown keys"):
        resolve_base_config({"learning_rate": 1})
    with pytest.raises(AcnError, match="stream"):
        train_base(ds, train, "depth", FAST, seed=0, progress=False)
    with pytest.raises(AcnError, match="nope"):
        train_base(ds, ["nope"], "rgb", FAST, seed=0, progress=False)
    with pytest.raises(AcnError, match="head"):
        BaseModel(4, 2, head="transformer")


def test_default_config_documents_known_model_keys():
    cfg = resolve_base_config(None)
    assert cfg == DEFAULT_BASE_CONFIG
    BaseModel(8, 3, **{k: cfg[k] for k in ("hidden", "kernel_size", "dropout", "head",
                                            "k_divisor", "scp", "attention", "pool",
                                            "background")})


# -- metrics and calibration -----------------------------------------------------------------
def test_average_precision_by_hand():
    # Ranked: pos, neg, pos, neg -> precisions at positives 1/1 and 2/3.
    ap = average_precision(np.array([0.9, 0.8, 0.7, 0.1]), np.array([1, 0, 1, 0]))
    assert ap == pytest.approx((1 + 2 / 3) / 2)
    assert math.isnan(average_precision(np.array([0.5]), np.array([0])))


def test_calibrate_attention_is_a_percentile_of_all_snippets():
    outs = {"a": BaseOutputs(np.zeros((2, 3), np.float32), np.array([1, 2, 3], np.float32),
                             np.zeros(2, np.float32)),
            "b": BaseOutputs(np.zeros((2, 2), np.float32), np.array([4, 5], np.float32),
                             np.zeros(2, np.float32))}
    assert calibrate_attention(outs, 50) == pytest.approx(3.0)
    assert calibrate_attention(outs, 100) == pytest.approx(5.0)
    with pytest.raises(AcnError):
        calibrate_attention(outs, 101)


# -- storage ---------------------------------------------------------------------------------
def test_outputs_round_trip(tmp_path, ds, trained):
    model, _ = trained
    ids = [v.id for v in ds.subset("test")][:3]
    outs = predict_base(model, ds, ids, "rgb")
    save_outputs(tmp_path / "out", outs)
    back = load_outputs(tmp_path / "out", ids)
    for vid in ids:
        np.testing.assert_array_equal(back[vid].scp, outs[vid].scp)
        np.testing.assert_array_equal(back[vid].attention, outs[vid].attention)
        np.testing.assert_array_equal(back[vid].video_scores, outs[vid].video_scores)
    with pytest.raises(AcnError, match="missing"):
        load_outputs(tmp_path / "out", ["absent"])
    assert not list((tmp_path / "out").glob(".*tmp"))  # atomic writes leave no temp files


def test_checkpoint_round_trip_weights_only(tmp_path, ds, trained):
    model, info = trained
    meta = {"config": info["config"], "classes": ds.classes, "stream": "rgb",
            "feature_dim": 16, "attention_threshold": np.float32(0.25)}
    path = tmp_path / "ckpt" / "base_rgb.pt"
    save_base_checkpoint(path, model, meta)
    blob = torch.load(path, weights_only=True)  # only plain types and tensors inside
    assert blob["meta"]["classes"] == ds.classes
    back, meta2 = load_base_checkpoint(path)
    assert meta2["attention_threshold"] == pytest.approx(0.25)
    assert meta2["config"] == info["config"]
    ids = [v.id for v in ds.subset("test")][:4]
    a, b = predict_base(model, ds, ids, "rgb"), predict_base(back, ds, ids, "rgb")
    for vid in ids:
        np.testing.assert_array_equal(a[vid].scp, b[vid].scp)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(AcnError, match="junk.pt"):
        load_base_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(AcnError, match="cannot be stored"):
        save_base_checkpoint(tmp_path / "x.pt", model, {"bad": object()})


def test_pad_batch_reuses_its_buffer_and_zeroes_the_padding():
    rng = np.random.default_rng(0)
    buf: list = []
    # a stale buffer full of garbage must not leak into the padding
    first = [rng.random((9, 4), dtype=np.float32) + 5 for _ in range(3)]
    pad_batch(first, buffer=buf)
    held = buf[0]
    second = [rng.random((t, 4), dtype=np.float32) for t in (2, 6)]
    x, m = pad_batch(second, buffer=buf)
    fresh, fm = pad_batch(second)
    assert buf[0] is held  # big enough: reused, no new allocation
    assert np.shares_memory(x.numpy(), held)
    np.testing.assert_array_equal(x.numpy(), fresh.numpy())
    np.testing.assert_array_equal(m.numpy(), fm.numpy())
    assert float(x[0, 2:].abs().sum()) == 0.0
    big = [rng.random((20, 4), dtype=np.float32)] * 2
    x2, _ = pad_batch(big, buffer=buf)
    assert buf[0] is not held and buf[0].size >= 160  # grown
    np.testing.assert_array_equal(x2.numpy(), np.stack(big))
