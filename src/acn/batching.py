"""Videos in padded batches, for training and for localize.

Reading one stream of a video (cached in RAM when it fits), snippet counts without loading,
zero-padding videos of different lengths into one ``(B, T_max, D)`` batch with its mask
(:func:`pad_batch`, into a reused buffer if asked), the batches of one training epoch
(shuffled, sorted by length within buckets), the batches of localize (sorted by length, at
most ``localize.batch_snippets`` padded snippets each), the padding buffers a model keeps
between localize calls, and its networks on the inference device (``localize.device``) for
a block. Units: snippets throughout.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch

from acn.data.annotations import Video
from acn.data.features import Dataset
from acn.errors import AcnError

STREAMS = ("rgb", "flow")
#: Column of each stream in ``Dataset.features(vid)`` (``(rgb, flow)``).
STREAM_INDEX = {"rgb": 0, "flow": 1}


def _check_stream(stream: str) -> int:
    if stream not in STREAMS:
        raise AcnError(f"unknown stream {stream!r}; choose 'rgb' or 'flow'")
    return STREAMS.index(stream)


def _ids(video_ids: Iterable[str | Video]) -> list[str]:
    ids = [v.id if isinstance(v, Video) else str(v) for v in video_ids]
    if not ids:
        raise AcnError("base model: no videos given")
    return ids


def _lengths(ds: Dataset, ids: Sequence[str]) -> np.ndarray:
    """Snippet count of each video, read from the (memory-mapped) store without loading."""
    out = np.empty(len(ids), dtype=np.int64)
    for i, vid in enumerate(ids):
        if vid not in ds.annotations.videos:
            raise AcnError(f"{ds.root or ds.annotations.name}: video {vid!r} is not in the "
                           "annotations")
        if not ds.store.has(vid):
            raise AcnError(f"{ds.store.describe(vid)}: feature file missing for listed video "
                           f"{vid!r}")
        out[i] = ds.store.load(vid)[0].shape[0]
        if out[i] == 0:
            raise AcnError(f"{ds.store.describe(vid)}: empty video (0 snippets)")
    return out


class _StreamReader:
    """Reads one stream per video from the dataset, caching it in RAM when it fits."""

    def __init__(self, ds: Dataset, stream: str, expected_dim: int | None, cache: bool) -> None:
        self.ds, self.col, self.dim, self.cache = ds, _check_stream(stream), expected_dim, cache
        self._mem: dict[str, np.ndarray] = {}

    def __call__(self, vid: str) -> np.ndarray:
        a = self._mem.get(vid)
        if a is None:
            a = self.ds.features(vid, self.dim)[self.col]
            if self.cache:
                self._mem[vid] = a
        return a


def pad_batch(arrays: Sequence[np.ndarray], device: str | torch.device = "cpu",
              buffer: list[np.ndarray] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ``(T_i, D)`` arrays into a zero-padded ``(B, T_max, D)`` tensor and a ``(B, T_max)``
    bool mask (True on real snippets).

    ``buffer``: a one-element list holding a float32 array that the batch is written into (and
    that is replaced by a larger one when too small), so that a loop over batches reuses the
    same memory instead of faulting in fresh pages for every batch. The returned tensor is
    then a view of it: valid only until the next call with the same buffer."""
    T = max(a.shape[0] for a in arrays)
    shape = (len(arrays), T, arrays[0].shape[1])
    n = int(np.prod(shape))
    # Allocated by torch, not numpy: numpy asks for transparent huge pages on large arrays,
    # and where the kernel compacts memory for them on demand (THP defrag "madvise") the
    # first write into a fresh 134 MB batch took 0.25-0.29 s after the regression nets had
    # churned the heap, against 0.065 s on ordinary pages (measured, 2-core machine).
    if buffer is not None:
        if not buffer or buffer[0].size < n:
            buffer[:] = [torch.empty(n, dtype=torch.float32).numpy()]
        x = buffer[0][:n].reshape(shape)
    else:
        # empty + zeroed tails: a full memset first would touch every page of a large batch twice
        x = torch.empty(shape, dtype=torch.float32).numpy()
    mask = np.zeros((len(arrays), T), dtype=bool)
    xt = torch.from_numpy(x)
    with warnings.catch_warnings():  # read-only sources (memory maps) are only read here
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        for i, a in enumerate(arrays):
            # torch's copy runs on all intra-op threads (numpy's on one): 1.8x faster on 2
            xt[i, : a.shape[0]].copy_(torch.from_numpy(np.asarray(a, dtype=np.float32)))
            xt[i, a.shape[0]:] = 0
            mask[i, : a.shape[0]] = True
    return xt.to(device), torch.from_numpy(mask).to(device)


def _epoch_batches(lengths: np.ndarray, batch_size: int, bucket: int,
                   rng: np.random.Generator) -> list[np.ndarray]:
    """Index batches for one epoch: shuffle, sort by length within buckets, shuffle batches."""
    perm = rng.permutation(len(lengths))
    group = batch_size * bucket
    batches = []
    for g in range(0, len(perm), group):
        chunk = perm[g: g + group]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i: i + batch_size] for i in range(0, len(chunk), batch_size)]
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


def length_batches(ids: Iterable[str], lengths: Mapping[str, int], batch_snippets: int
                   ) -> list[list[str]]:
    """``ids`` sorted by length and cut into batches whose padded size (videos x the longest)
    stays within ``batch_snippets`` (a longer video is a batch of its own)."""
    order = sorted(ids, key=lambda v: lengths[v])
    batches, cur = [], []
    for vid in order:  # videos of similar length share one padded conv batch
        if cur and (len(cur) + 1) * lengths[vid] > batch_snippets:
            batches.append(cur)
            cur = []
        cur.append(vid)
    if cur:
        batches.append(cur)
    return batches



def inference_device(name: str) -> torch.device:
    """``localize.device`` as a torch device, with a clear error when it is not usable here."""
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError) as e:
        raise AcnError(f"localize.device={name!r}: not a device name (cpu, cuda, cuda:N)") from e
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise AcnError(f"localize.device={name!r}: no CUDA device is visible to this "
                           f"process (torch {torch.__version__}); use localize.device=cpu")
        if dev.index is not None and dev.index >= n:
            raise AcnError(f"localize.device={name!r}: only {n} CUDA device(s) are visible")
    elif dev.type != "cpu":
        raise AcnError(f"localize.device={name!r}: only cpu and cuda are supported")
    return dev

@contextlib.contextmanager
def padding_buffers(kept: dict[str, list[np.ndarray]], streams: Iterable[str]
                    ) -> Iterator[dict[str, list[np.ndarray]]]:
    """``{stream: buffer}`` for :func:`pad_batch`, kept in ``kept`` between calls; taken out
    of it while in use, so that a concurrent call on the same object pads into its own
    buffers instead of overwriting a batch in use."""
    buffers = {s: kept.pop(s, []) for s in streams}
    try:
        yield buffers
    finally:
        kept.update(buffers)


@contextlib.contextmanager
def models_on(models: Mapping, dev: torch.device, streams: Iterable[str]) -> Iterator[None]:
    """Move the streams' base models and regression nets (``models[s].base``, ``.nets``) to
    ``dev`` for a block, and back to the CPU after it (everything else, e.g.
    ``ACN.baseline``, expects them there)."""
    if dev.type == "cpu":
        yield
        return
    try:
        for s in streams:
            models[s].base.to(dev)
            models[s].nets.to(dev)
        yield
    finally:
        for s in streams:
            models[s].base.to("cpu")
            models[s].nets.to("cpu")
