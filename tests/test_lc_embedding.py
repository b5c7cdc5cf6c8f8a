"""acn.lc_features: embedding: Lc on each stream's base-model embedding instead of the input."""

import copy

import numpy as np
import pytest
import torch

from acn.errors import AcnError
from acn.model.base import BaseModel
from acn.pipeline import ACN, mean_outputs


def test_embedding_ignores_padding_and_is_zero_there():
    # a video alone and the same video padded in a batch get the same embedding; padding is 0
    torch.manual_seed(0)
    net = BaseModel(12, 3, hidden=8, kernel_size=3).eval()
    x = torch.randn(1, 20, 12)
    with torch.no_grad():
        alone = net.embed(x, torch.ones(1, 20, dtype=torch.bool))
    batch = torch.zeros(2, 30, 12)
    batch[0, :20] = x[0]
    batch[1] = torch.randn(30, 12)
    mask = torch.zeros(2, 30, dtype=torch.bool)
    mask[0, :20], mask[1] = True, True
    with torch.no_grad():
        padded = net.embed(batch, mask)
    assert alone.shape == (1, 20, 8)
    torch.testing.assert_close(padded[0, :20], alone[0])
    assert float(padded[0, 20:].abs().max()) == 0.0
    assert float(alone.min()) >= 0.0  # ReLU hidden layer


@pytest.fixture(scope="module")
def embedded(tiny, tmp_path_factory):
    from acn.config import resolve
    from conftest import FAST_SET

    cfg = resolve(overrides=FAST_SET + ["acn.lc_features=embedding", "select.validation_fraction=0"])
    model = ACN(cfg)
    model.fit(tiny, tmp_path_factory.mktemp("emb_run"), progress=False)
    return model


def test_localize_computes_lc_on_each_streams_embedding(tiny, embedded):
    # the joint proposals of a video are those of scoring it with each stream's base-model
    # embedding as Lc's features; with the input features instead (standardize) they differ
    model = copy.copy(embedded)
    model.cfg = copy.deepcopy(embedded.cfg)
    model.cfg["localize"].update(video_score_weight=0.0)
    vid = [v.id for v in tiny.subset("test")][0]
    props, _ = model.propose(tiny, [vid], ["joint"])
    got = props["joint"][vid]

    x = {s: torch.from_numpy(a) for s, a in zip(("rgb", "flow"), tiny.features(vid))}
    T = x["rgb"].shape[0]
    with torch.inference_mode():
        emb = {s: model.models[s].base.eval().embed(x[s][None], torch.ones(1, T, dtype=torch.bool))[0]
               for s in x}
        regs = {s: {a: r[0] for a, r in model.models[s].nets(x[s][None]).items()} for s in x}
    w = model.rgb_weight()
    outs = {s: {vid: model.base_outputs(tiny, [vid], s)[vid]} for s in x}
    joint_regs = {a: w * regs["rgb"][a] + (1 - w) * regs["flow"][a] for a in regs["rgb"]}
    thr = (w * model.models["rgb"].attention_threshold
           + (1 - w) * model.models["flow"].attention_threshold)
    want = model._score_one([emb["rgb"], emb["flow"]], mean_outputs(outs, vid, w), joint_regs,
                            thr, group_weights=[w, 1 - w])
    assert len(got.scores) > 0
    np.testing.assert_allclose(got.segments, want.segments, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5, atol=1e-6)

    model.cfg["acn"]["lc_features"] = "standardize"
    other = model.propose(tiny, [vid], ["joint"])[0]["joint"][vid]
    assert len(other.scores) != len(got.scores) or not np.allclose(other.scores,
                                                                   got.scores)


def test_regression_training_reads_lc_from_the_embedding(fast_cfg):
    from acn.train.outputs import BaseOutputs
    from acn.train.regression import train_regression

    rng = np.random.default_rng(0)
    feats = {v: rng.random((30, 8)).astype(np.float32) for v in ("a", "b")}
    outs = {v: BaseOutputs(scp=rng.dirichlet(np.ones(3), 30).T.astype(np.float32),
                           attention=np.ones(30, np.float32),
                           video_scores=np.array([0.8, 0.1, 0.1], np.float32)) for v in feats}
    acn = {**fast_cfg["acn"], "anchors": [2, 4], "lc_features": "embedding", "alpha": 0.5}
    args = (feats.__getitem__, ["a", "b"], outs, {"a": [0], "b": [0]}, 8, acn,
            {**fast_cfg["train"], "batch_videos": 2, "epochs": 1})
    with pytest.raises(AcnError, match="embedding"):
        train_regression(*args, seed=0, progress=False)
    seen = []
    emb = {v: np.abs(rng.standard_normal((30, 5))).astype(np.float32) for v in feats}
    _, with_emb = train_regression(*args, seed=0, progress=False,
                                   lc_source=lambda v: seen.append(v) or emb[v])
    _, with_feats = train_regression(*args[:5], {**acn, "lc_features": "raw"}, args[6], seed=0,
                                     progress=False)
    assert sorted(seen) == ["a", "b"]
    assert with_emb[0]["loss"] != pytest.approx(with_feats[0]["loss"])


def test_refine_has_no_embedding_and_says_it_uses_standardize():
    from acn.config import resolve
    from acn.refine import Refiner

    refiner = Refiner(resolve(overrides=["acn.lc_features=embedding"]))
    assert refiner.cfg["acn"]["lc_features"] == "standardize"
    assert "standardize" in refiner.log["lc_features"]
