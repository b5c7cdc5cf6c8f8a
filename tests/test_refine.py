"""``acn refine``: reading another model's CAS, and ACN's nets and -L scoring over it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from acn.cli import main
from acn.config import resolve
from acn.data.canonical import save_canonical
from acn.data.features import Dataset, MemoryStore
from acn.errors import AcnError
from acn.evaluate import evaluate
from acn.refine import CasSource, Refiner, read_cas, save_cas, to_outputs, topk_video_scores

from conftest import FAST_SET, tiny_dataset

REFINE_SET = [s for s in FAST_SET if not s.startswith("base.")]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def gt_cas(ann, feats, seed: int = 0, widen: int = 2) -> dict[str, np.ndarray]:
    """A (T, C) CAS of every video: its ground truth widened by ``widen`` snippets on each
    side (another model's blurred boundaries), on uniform noise."""
    rng = np.random.default_rng(seed)
    out = {}
    for vid, v in ann.videos.items():
        T = feats[vid][0].shape[0]
        c = 0.05 + rng.uniform(0, 0.3, (T, len(ann.classes)))
        for s in v.segments:
            a, b = int(round(s.start * 25 / 16)), int(round(s.end * 25 / 16))
            c[max(0, a - widen): min(T, b + widen), ann.classes.index(s.label)] += 0.5
        out[vid] = np.clip(c, 0, 1).astype(np.float32)
    return out


@pytest.fixture(scope="module")
def world():
    ann, feats = tiny_dataset()
    return ann, feats, Dataset(ann, MemoryStore(feats)), gt_cas(ann, feats)


# -- the format ---------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 5), st.integers(1, 40)),
              elements=st.floats(0, 1, width=32)), st.sampled_from([1.0, 3.0, 8.0]))
def test_topk_video_scores_is_the_mean_of_each_class_top_k(scp, k_divisor):
    got = topk_video_scores(scp, k_divisor)
    k = max(1, int(scp.shape[1] // k_divisor))
    for c in range(scp.shape[0]):
        want = np.mean(sorted(scp[c].tolist(), reverse=True)[:k])
        assert got[c] == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_logits_become_probabilities_and_the_background_column_goes():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (30, 4))
    o = to_outputs({"cas": logits, "attention": None, "video_scores": None}, 3, 30, "x",
                   activation="softmax", background="last")
    e = np.exp(logits - logits.max(1, keepdims=True))
    want = (e / e.sum(1, keepdims=True))[:, :3].T
    np.testing.assert_allclose(o.scp, want, rtol=1e-5)
    assert o.scp.shape == (3, 30) and o.attention.shape == (30,)
    np.testing.assert_allclose(o.attention, want.max(0), rtol=1e-5)
    np.testing.assert_allclose(o.video_scores, topk_video_scores(o.scp), rtol=1e-6)
    s = to_outputs({"cas": logits[:, :3], "attention": None, "video_scores": None}, 3, 30, "x",
                   activation="sigmoid")
    np.testing.assert_allclose(s.scp, 1 / (1 + np.exp(-logits[:, :3].T)), rtol=1e-5)


@pytest.mark.parametrize("cas, kw, match", [
    (np.full((30, 4), 0.5), {}, "background"),                      # C + 1 columns
    (np.full((3, 30), 0.5), {}, "transposed"),                      # (C, T)
    (np.full((29, 3), 0.5), {}, "29 snippets, the video's features 30"),
    (np.full((30, 3), 2.0), {}, "logits\\? pass --activation"),
    (np.full((30, 3), 2.0), {"activation": "probs"}, "--activation probs"),
    (np.full((30,), 0.5), {}, "must be \\(T, C\\)"),
])
def test_a_cas_that_does_not_fit_is_refused_with_the_reason(cas, kw, match):
    with pytest.raises(AcnError, match=match):
        to_outputs({"cas": cas, "attention": None, "video_scores": None}, 3, 30, "f.npy", **kw)


def test_nan_in_a_cas_names_the_snippet():
    cas = np.full((30, 3), 0.5)
    cas[7, 2] = np.nan
    with pytest.raises(AcnError, match="snippet 7, class column 2"):
        to_outputs({"cas": cas, "attention": None, "video_scores": None}, 3, 30, "f.npy")


def test_the_three_layouts_read_the_same(tmp_path, world):
    ann, feats, ds, cas = world
    ids = sorted(cas)[:5]
    (tmp_path / "npy").mkdir()
    for v in ids:
        np.save(tmp_path / "npy" / f"{v}.npy", cas[v])
    np.savez(tmp_path / "all.npz", **{v: cas[v] for v in ids})
    a = read_cas(tmp_path / "npy", ds, ids)
    b = read_cas(tmp_path / "all.npz", ds, ids)
    c = read_cas(save_cas(tmp_path / "npz", a), ds, ids)  # with attention and video scores
    for v in ids:
        for x in (b, c):
            np.testing.assert_array_equal(a[v].scp, x[v].scp)
            np.testing.assert_array_equal(a[v].video_scores, x[v].video_scores)
    with pytest.raises(AcnError, match="no CAS for 1 of 6 videos"):
        read_cas(tmp_path / "npy", ds, ids + [sorted(cas)[9]])
    (tmp_path / "npy" / f"{ids[0]}.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(AcnError, match=f"{ids[0]}.npy: unreadable CAS"):
        read_cas(tmp_path / "npy", ds, ids)
    with pytest.raises(AcnError, match="CAS not found"):
        CasSource(tmp_path / "nothing")


# -- the refiner --------------------------------------------------------------------------------
def test_refine_recovers_the_actions_of_a_clean_cas_and_reloads_identically(tmp_path, world):
    ann, feats, ds, _ = world
    cas = gt_cas(ann, feats, widen=0)
    src = CasSource(_npz(tmp_path, cas))
    train = [v.id for v in ds.subset("validation")]
    test = [v.id for v in ds.subset("test")]
    refiner = Refiner(resolve(overrides=REFINE_SET))
    log = refiner.fit(ds, read_cas(src, ds, train), run=tmp_path / "run", progress=False)
    chosen = log["scoring"]["chosen"]  # chosen on carved training videos, as acn train does
    assert chosen["nms_iou"] == refiner.cfg["localize"]["nms_iou"]
    assert chosen["alpha"] == refiner.cfg["acn"]["alpha"]
    assert "nms_iou: " + str(chosen["nms_iou"]) in (tmp_path / "run" / "config.yaml").read_text()
    check = log["regression_check"]  # acn train's regression check, on carved videos
    assert check["validation_videos"] > 0
    assert refiner.cfg["acn"]["regression"] == check["regression"]
    assert check["regression"] == (check["bootstrap_support"] >= 0.8)
    test_cas = read_cas(src, ds, test)
    dets = refiner.localize(ds, test_cas, test, progress=False)
    assert set(dets) == set(test)
    for vid, d in dets.items():
        dur = ann.videos[vid].duration
        assert d and all(0 <= s < e <= dur + 1e-6 and lab in ann.classes for s, e, lab, _ in d)
    r = evaluate(ann, dets, "test", "thumos14")
    assert r.map[0.5] >= 0.7, r.map  # the CAS holds the actions (on noise up to 0.35)
    again = Refiner.load(tmp_path / "run").localize(ds, test_cas, test, progress=False)
    assert again == dets
    # nets trained without the check move the boundaries: not the CAS segments' own
    forced = Refiner(resolve(overrides=REFINE_SET + ["select.regression_check=false"]))
    log = forced.fit(ds, read_cas(src, ds, train), progress=False)
    assert all(h["loss"] is not None for h in log["rgb_regression"]["history"])
    regressed = []
    for reg in (True, False):
        forced.cfg["acn"]["regression"] = reg
        regressed.append(forced.localize(ds, test_cas, test, progress=False))
    assert regressed[0] != regressed[1]
    if not check["regression"]:
        assert dets == regressed[1]


def _npz(tmp_path, cas) -> str:
    path = tmp_path / "cas.npz"
    np.savez(path, **cas)
    return str(path)


def test_cli_refine_trains_saves_and_reuses(tmp_path, world):
    ann, feats, ds, cas = world
    data = save_canonical(tmp_path / "data", ann, feats)
    cas_path = _npz(tmp_path, cas)
    sets = sum((["--set", s] for s in REFINE_SET), [])
    out1, out2 = tmp_path / "a.json", tmp_path / "b.json"
    assert main(["refine", "--cas", cas_path, "--data", str(data), "--out", str(out1),
                 "--save-run", str(tmp_path / "r"), "--quiet", *sets]) == 0
    assert (tmp_path / "r" / "config.yaml").is_file()
    assert main(["refine", "--cas", cas_path, "--data", str(data), "--out", str(out2),
                 "--run", str(tmp_path / "r"), "--quiet"]) == 0
    assert json.loads(out1.read_text())["results"] == json.loads(out2.read_text())["results"]


def test_cli_refine_errors(tmp_path, world, capsys):
    ann, feats, ds, cas = world
    data = save_canonical(tmp_path / "data", ann, feats)
    test_only = tmp_path / "test_only.npz"
    np.savez(test_only, **{v.id: cas[v.id] for v in ds.subset("test")})
    out = tmp_path / "p.json"
    assert main(["refine", "--cas", str(test_only), "--data", str(data), "--out", str(out)]) == 2
    assert "no CAS for any training video" in capsys.readouterr().err
    wide = tmp_path / "wide.npz"
    np.savez(wide, **{v: np.concatenate([c, c[:, :1]], 1) for v, c in cas.items()})
    assert main(["refine", "--cas", str(wide), "--data", str(data), "--out", str(out)]) == 2
    assert "--background last" in capsys.readouterr().err
    assert not out.exists()
    short = dict(cas)  # one test video's CAS a snippet short: refused before any training
    vid = next(v.id for v in ds.subset("test"))
    short[vid] = cas[vid][:-1]
    np.savez(tmp_path / "short.npz", **short)
    assert main(["refine", "--cas", str(tmp_path / "short.npz"), "--data", str(data),
                 "--out", str(out), "--save-run", str(tmp_path / "r")]) == 2
    assert f"[{vid}]: CAS has" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "r").exists()


def test_refine_reuses_the_nets_of_an_acn_train_run(tmp_path, world):
    """`--run` of an `acn train` folder: its regression nets over its own base models' CAS
    (exported with save_cas); the attention threshold is recalibrated on the refined videos."""
    from acn.pipeline import ACN

    ann, feats, ds, _ = world
    data = save_canonical(tmp_path / "data", ann, feats)
    quick = FAST_SET + ["base.epochs=2", "train.epochs=1", "select.validation_fraction=0"]
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--quiet",
                 *sum((["--set", s] for s in quick), [])]) == 0
    model = ACN.load(tmp_path / "run")
    test = [v.id for v in ds.subset("test")]
    save_cas(tmp_path / "cas", model.base_outputs(ds, test, "flow"))
    out = tmp_path / "p.json"
    assert main(["refine", "--cas", str(tmp_path / "cas"), "--data", str(data), "--out",
                 str(out), "--run", str(tmp_path / "run"), "--quiet"]) == 0
    res = json.loads(out.read_text())["results"]
    assert set(res) == set(test) and any(res.values())
    refiner = Refiner.load(tmp_path / "run")
    assert refiner.attention_threshold is None  # not on this CAS's scale: recalibrated


def test_refine_leaves_the_attention_term_off_unless_asked():
    """An external CAS's attention has no known scale: null is 0 (and refine.json says so);
    a weight the user sets is kept."""
    off = Refiner(resolve())
    assert off.cfg["localize"]["attention_weight"] == 0.0
    assert "attention_weight" in off.log
    on = Refiner(resolve(overrides=["localize.attention_weight=0.4"]))
    assert on.cfg["localize"]["attention_weight"] == 0.4 and "attention_weight" not in on.log
