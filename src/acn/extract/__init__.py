"""Feature extraction: video files -> two-stream (RGB, optical flow) I3D snippet features.

Importable without PyAV or OpenCV; functions that decode or compute flow raise
:class:`acn.errors.AcnError` naming ``pip install acn[video]`` when they are missing.
See ``docs/extract.md`` for the command line.
"""

from acn.extract.config import FLOW_METHODS, ExtractConfig
from acn.extract.inputs import collect_videos, parse_shard, take_shard
from acn.extract.pipeline import (
    ExtractedFeatures,
    I3DModels,
    Summary,
    build_models,
    extract_many,
    extract_video,
    write_index,
)

__all__ = [
    "FLOW_METHODS",
    "ExtractConfig",
    "ExtractedFeatures",
    "I3DModels",
    "Summary",
    "build_models",
    "collect_videos",
    "extract_many",
    "extract_video",
    "parse_shard",
    "take_shard",
    "write_index",
]
