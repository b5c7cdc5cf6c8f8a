"""Evaluation of temporal detections: results JSON I/O and mAP under two protocols.

* :mod:`acn.evaluate.results` - :class:`Detections` (a flat table) and the ActivityNet
  submission JSON (:func:`save_results`, :func:`load_results`).
* :mod:`acn.evaluate.activitynet` - the official ActivityNet protocol.
* :mod:`acn.evaluate.thumos14` - the official THUMOS14 (MATLAB ``TH14evalDet``) protocol.
* :mod:`acn.evaluate.evaluator` - :func:`evaluate` and :class:`EvalResult`.

Every time is in seconds; every AP is a fraction (tables print percent).
"""

from acn.evaluate.evaluator import (
    PROTOCOLS,
    EvalResult,
    check_tious,
    default_tious,
    evaluate,
)
from acn.evaluate.results import Detections, load_results, save_results

__all__ = [
    "PROTOCOLS",
    "Detections",
    "EvalResult",
    "check_tious",
    "default_tious",
    "evaluate",
    "load_results",
    "save_results",
]
