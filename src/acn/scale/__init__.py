"""Corpus-scale jobs: feature extraction and localization over a manifest of videos.

The per-video work is plain functions (:mod:`acn.scale.work`); :func:`run_local` runs them
here (one process or a process pool, with ``--shard i/n`` to split a manifest across
machines by hand) and :func:`run_ray` as Ray tasks (``pip install acn[ray]``). Outputs are
per video and idempotent: a rerun skips what is done and retries what failed.
See ``docs/scale-out.md``.
"""

from acn.scale.manifest import Item, read_manifest
from acn.scale.runner import BatchSummary, finish, run_local, run_ray, write_results
from acn.scale.work import (
    WORK,
    ItemResult,
    JobSpec,
    TransientError,
    attempt,
    detections_path,
    extract_item,
    localize_item,
)

__all__ = [
    "WORK",
    "BatchSummary",
    "Item",
    "ItemResult",
    "JobSpec",
    "TransientError",
    "attempt",
    "detections_path",
    "extract_item",
    "finish",
    "localize_item",
    "read_manifest",
    "run_local",
    "run_ray",
    "write_results",
]
