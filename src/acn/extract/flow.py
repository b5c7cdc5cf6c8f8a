"""Dense optical flow between consecutive frames, in the I3D input convention.

Three OpenCV algorithms: TV-L1 (``cv2.optflow.DualTVL1OpticalFlow``, the algorithm of the
published I3D/W-TALC flow features, slow on CPU), DIS and Farneback (fast approximations).
Flow is computed on grayscale frames, clipped to [-20, 20] pixels and divided by 20, so the
I3D flow stream sees ``(H, W, 2)`` float32 values in [-1, 1] (channel 0 = x, 1 = y).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from acn.errors import AcnError
from acn.extract._deps import require_cv2, require_optflow

FLOW_BOUND = 20.0  # pixels; the I3D convention


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """uint8 ``(H, W, 3)`` RGB -> uint8 ``(H, W)`` luma."""
    cv2 = require_cv2()
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def normalize_flow(flow: np.ndarray, bound: float = FLOW_BOUND) -> np.ndarray:
    """Clip pixel displacements to ``[-bound, bound]`` and scale to [-1, 1] (float32)."""
    return (np.clip(flow, -bound, bound) / bound).astype(np.float32, copy=False)


def make_flow(method: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A function ``(prev_gray, next_gray) -> flow``: uint8 ``(H, W)`` frames to float32
    ``(H, W, 2)`` pixel displacements (not normalised). One instance per thread."""
    if method == "tvl1":
        cv2 = require_optflow()
        # OpenCV's defaults (tau 0.25, lambda 0.15, theta 0.3, 5 scales, 5 warps, eps 0.01),
        # as in the Kinetics I3D flow preprocessing.
        tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
        return lambda a, b: tvl1.calc(a, b, None)
    if method == "dis":
        cv2 = require_cv2()
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        return lambda a, b: dis.calc(a, b, None)
    if method == "farneback":
        cv2 = require_cv2()
        return lambda a, b: cv2.calcOpticalFlowFarneback(
            a, b, None, pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5,
            poly_sigma=1.2, flags=0)
    raise AcnError(f"unknown optical flow method {method!r} (tvl1, dis, farneback)")
