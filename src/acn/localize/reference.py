"""Direct, loop-based reference implementations (numpy / plain Python).

Slow on purpose: every quantity is computed the obvious way, one proposal at a time, with the
explicit overlap length of each snippet [i, i+1) with each interval. The tests compare the
vectorised code in ``acn.model.coherence`` and ``acn.localize`` against these, and
``benchmarks/bench_scoring.py`` times them. Not used by the library itself.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "interval_mean",
    "proposal_terms_one",
    "decode_one",
    "contains",
    "filter_one",
    "one_per_position_bruteforce",
    "greedy_nms_bruteforce",
    "fusion_bruteforce",
    "iou_one",
]


def _integral(f: np.ndarray, a: float, b: float) -> np.ndarray:
    """int_a^b f for piecewise-constant f (T, D): sum over snippets of overlap * value."""
    total = np.zeros(f.shape[1], dtype=np.float64)
    for i in range(max(0, math.floor(a)), min(f.shape[0], math.ceil(b))):
        overlap = min(b, i + 1) - max(a, i)
        if overlap > 0:
            total += overlap * f[i]
    return total


def interval_mean(f: np.ndarray, a: float, b: float, eps: float = 1e-6) -> np.ndarray:
    """Mean of f (T, D) over [a, b]; for b - a < eps the value of the snippet containing a
    (index clamped to [0, T-1])."""
    if not b - a > eps:
        i = min(max(math.floor(a), 0), f.shape[0] - 1)
        return f[i].astype(np.float64)
    return _integral(f, a, b) / (b - a)


def _cos(u: np.ndarray, v: np.ndarray, eps: float = 1e-8) -> float:
    return float(u @ v / math.sqrt(max(float(u @ u) * float(v @ v), eps * eps)))


def proposal_terms_one(features: np.ndarray, scp: np.ndarray, Xs: float, xs: float, xe: float,
                       Xe: float, alpha: float = 0.6, eps: float = 1e-6
                       ) -> tuple[np.ndarray, float, np.ndarray]:
    """L_OIC (K,), Lc and L (K,) of ONE proposal.

    features: (T, D); scp: (K, T); boundaries in snippets, Xs <= xs <= xe <= Xe.
    """
    f = np.asarray(features, dtype=np.float64)
    s = np.asarray(scp, dtype=np.float64).T  # (T, K)
    inner = interval_mean(s, xs, xe, eps)
    outer_len = (xs - Xs) + (Xe - xe)
    if outer_len > eps:
        outer = (_integral(s, Xs, xs) + _integral(s, xe, Xe)) / outer_len
    else:
        outer = np.zeros(s.shape[1])
    l_oic = outer - inner
    rs = interval_mean(f, Xs, xs, eps)
    ra = interval_mean(f, xs, xe, eps)
    re = interval_mean(f, xe, Xe, eps)
    lc = (_cos(rs, ra) + _cos(re, ra)) / 2
    return l_oic, lc, alpha * l_oic + (1 - alpha) * (lc - 1)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def decode_one(T: int, P: int, i: int, r: np.ndarray | None, inflation: float = 0.25
               ) -> tuple[float, float, float, float]:
    """(Xs, xs, xe, Xe) of the anchor (i, i+P), Eqs. 5-6 written out for one proposal."""
    xs, xe = float(i), float(i + P)
    if r is not None:
        xs = xs + P * (_sigmoid(float(r[0, i])) - 0.5)
        xe = xe + P * (_sigmoid(float(r[1, min(i + P, T - 1)])) - 0.5)
    xs = min(max(xs, 0.0), T)
    xe = min(max(xe, 0.0), T)
    return (min(max(xs - inflation * P, 0.0), T), xs, xe, min(max(xe + inflation * P, 0.0), T))


def contains(a: float, b: float, i: int) -> bool:
    """Does [a, b) contain snippet i, i.e. its centre i + 0.5?"""
    return a <= i + 0.5 < b


def filter_one(a: float, b: float, scp_row: np.ndarray, threshold: float,
               low_attention: np.ndarray | None = None) -> bool:
    """Does proposal [a, b) survive: >= 1 contained snippet, none with SCP < threshold, none
    with low attention?"""
    inside = [i for i in range(len(scp_row)) if contains(a, b, i)]
    if not inside:
        return False
    if any(scp_row[i] < threshold for i in inside):
        return False
    if low_attention is not None and any(low_attention[i] for i in inside):
        return False
    return True


def one_per_position_bruteforce(segments: np.ndarray, scores: np.ndarray, valid: np.ndarray,
                                T: int) -> np.ndarray:
    """(N, K) keep mask: for each position t and class k, keep the valid proposals of the
    highest score among those containing t (all tied)."""
    n, k = scores.shape
    keep = np.zeros((n, k), dtype=bool)
    for c in range(k):
        for t in range(T):
            cover = [j for j in range(n) if valid[j, c]
                     and contains(segments[j, 0], segments[j, 1], t)]
            if cover:
                best = max(scores[j, c] for j in cover)
                for j in cover:
                    if scores[j, c] == best:
                        keep[j, c] = True
    return keep


def iou_one(a, b) -> float:
    """IoU of two segments; 0 when either has zero length."""
    la, lb = max(a[1] - a[0], 0.0), max(b[1] - b[0], 0.0)
    if la <= 0 or lb <= 0:
        return 0.0
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = la + lb - inter
    return inter / union if union > 0 else 0.0


def greedy_nms_bruteforce(segments, scores, labels, iou_threshold: float) -> list[int]:
    """Textbook greedy NMS (per label), ties broken by lower index first."""
    order = sorted(range(len(scores)), key=lambda j: (-scores[j], j))
    kept: list[int] = []
    for j in order:
        if all(labels[j] != labels[q] or iou_one(segments[j], segments[q]) <= iou_threshold
               for q in kept):
            kept.append(j)
    return kept


def fusion_bruteforce(flow, rgb, rgb_factor: float = 0.5, iou_threshold: float = 0.4):
    """flow / rgb: lists of (segment, score, label). All Flow kept; an RGB proposal is kept
    (score * rgb_factor) iff its max IoU with same-label Flow proposals is < threshold."""
    out = [(seg, sc, lab, "flow") for seg, sc, lab in flow]
    for seg, sc, lab in rgb:
        best = max((iou_one(seg, fseg) for fseg, _, flab in flow if flab == lab), default=0.0)
        if best < iou_threshold:
            out.append((seg, sc * rgb_factor, lab, "rgb"))
    return out
