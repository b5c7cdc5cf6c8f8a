"""Multi-process training support: torchrun detection and the few collectives acn needs.

Launched by ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``
and ``MASTER_PORT``), :func:`init_from_env` joins the process group: ``nccl`` when CUDA is
available, ``gloo`` otherwise (override with ``ACN_DIST_BACKEND``). Everything here is a
no-op in a plain single process, so library code calls these helpers unconditionally.

How acn shards training (see ``docs/scale-out.md``): every rank draws the SAME epoch order,
batches and crops from the same seed; each global mini-batch is split across ranks
(``batch[rank::world]``); a rank's loss is weighted by its share of the global batch so that
the SUM of the ranks' gradients (:func:`all_reduce_gradients`) equals the gradient of the
single-process batch mean. Optimiser state therefore stays identical on every rank, and the
trained weights equal single-process training's up to floating-point reduction order (with
dropout > 0 the dropout masks differ, as with DDP: equal in distribution only).
"""

from __future__ import annotations

import datetime
import os
from typing import Any, Iterable, Sequence, TypeVar

import torch

T = TypeVar("T")

BACKEND_ENV = "ACN_DIST_BACKEND"


def _dist():
    import torch.distributed as dist

    return dist


def launched() -> bool:
    """Whether this process was started by torchrun (or an equivalent launcher) with > 1 ranks."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ
    except ValueError:
        return False


def is_distributed() -> bool:
    """Whether a process group with more than one rank is initialised."""
    dist = _dist()
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def init_from_env(backend: str | None = None, timeout_s: float = 1800.0) -> bool:
    """Join the process group described by the environment, once; returns :func:`is_distributed`.

    Does nothing in a single process (no ``WORLD_SIZE`` > 1) or when a group already exists
    (e.g. the caller initialised it). ``backend``: ``gloo`` | ``nccl``; default
    ``$ACN_DIST_BACKEND``, else ``nccl`` with CUDA, ``gloo`` without.
    """
    dist = _dist()
    if not dist.is_available():
        return False
    if dist.is_initialized():
        return is_distributed()
    if not launched():
        return False
    backend = backend or os.environ.get(BACKEND_ENV) or (
        "nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    return is_distributed()


def cleanup() -> None:
    """Leave the process group (after a final barrier)."""
    dist = _dist()
    if dist.is_available() and dist.is_initialized():
        barrier()
        dist.destroy_process_group()


def rank() -> int:
    dist = _dist()
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return 0


def world_size() -> int:
    dist = _dist()
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """True on rank 0 (and in a single process): the one rank that writes files and prints."""
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist = _dist()
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def comm_device() -> torch.device:
    """Where collective tensors must live: the local GPU for nccl, the CPU for gloo."""
    if is_distributed() and _dist().get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def train_device() -> torch.device | str:
    """The device this rank trains on: its GPU under nccl, else the CPU."""
    return comm_device() if is_distributed() else "cpu"


def shard(items: Sequence[T]) -> list[T]:
    """This rank's share of ``items``: ``items[rank::world]`` (all of them when single)."""
    return list(items[rank()::world_size()])


def all_reduce(values: Sequence[float], op: str = "sum") -> list[float]:
    """Reduce a few Python numbers across ranks (float64); ``op``: sum | max | min."""
    if not is_distributed():
        return [float(v) for v in values]
    dist = _dist()
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=comm_device())
    dist.all_reduce(t, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX,
                           "min": dist.ReduceOp.MIN}[op])
    return t.cpu().tolist()


def all_reduce_gradients(params: Iterable[torch.nn.Parameter],
                         extra: Sequence[float] = ()) -> list[float]:
    """SUM the gradients of ``params`` over ranks, in one flat all-reduce.

    A parameter no rank has a gradient for keeps ``grad = None`` (so optimisers skip it as
    in a single process); one that only some ranks have a gradient for gets zeros elsewhere.
    ``extra`` numbers ride along in the same all-reduce (summed); their sums are returned.
    Single process: gradients untouched, ``extra`` returned as is.
    """
    params = [p for p in params if p.requires_grad]
    if not is_distributed():
        return [float(v) for v in extra]
    dist = _dist()
    dev = comm_device()
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=dev)
    if params:
        dist.all_reduce(has, op=dist.ReduceOp.MAX)
    live = [p for p, h in zip(params, has.tolist()) if h > 0]
    dtype = torch.float64 if any(p.dtype == torch.float64 for p in live) else torch.float32
    chunks = [(p.grad.detach() if p.grad is not None else torch.zeros_like(p))
              .reshape(-1).to(dev, dtype) for p in live]
    chunks.append(torch.tensor([float(v) for v in extra], dtype=dtype, device=dev))
    flat = torch.cat(chunks)
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    off = 0
    for p in live:
        n = p.numel()
        g = flat[off: off + n].view_as(p).to(p.device, p.dtype)
        if p.grad is None:
            p.grad = g.clone()
        else:
            p.grad.copy_(g)
        off += n
    return flat[off:].cpu().tolist()


def broadcast_parameters(module: torch.nn.Module, src: int = 0) -> None:
    """Copy ``src``'s parameters and buffers to every rank (insurance: same seed = same init)."""
    if not is_distributed():
        return
    dist = _dist()
    dev = comm_device()
    for t in list(module.parameters()) + list(module.buffers()):
        buf = t.detach().to(dev)
        dist.broadcast(buf, src=src)
        with torch.no_grad():
            t.copy_(buf.to(t.device))


def all_gather_dict(local: dict[str, Any]) -> dict[str, Any]:
    """Merge every rank's ``{key: picklable}`` dict (keys must not clash); single: ``local``."""
    if not is_distributed():
        return dict(local)
    dist = _dist()
    parts: list[Any] = [None] * world_size()
    dist.all_gather_object(parts, local)
    merged: dict[str, Any] = {}
    for p in parts:
        merged.update(p)
    return merged


def broadcast_object(obj: T, src: int = 0) -> T:
    """``src``'s ``obj`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    _dist().broadcast_object_list(box, src=src)
    return box[0]
