"""One video's proposals, from its base outputs and regressions to the detections kept.

:func:`score_candidates` gathers the candidates of one video (anchor proposals, CAS segments,
whole-video proposals; ``acn.proposals``, ``localize.whole_video``), moves their boundaries by
the regressions and scores them by -L (``acn.score_terms``); :func:`suppress` keeps the best
by NMS (``localize.nms``); :func:`fuse_proposals` merges the RGB and Flow proposals of a video
as the paper does (Sec. 3.4). Segments are in snippets.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from acn.errors import AcnError
from acn.localize.fusion import fuse_streams
from acn.localize.nms import nms
from acn.localize.proposals import score_video, select_classes
from acn.localize.segments import (attention_contrast, attention_probability, cas_candidates,
                                   regress_segments, score_segments, scp_thresholds,
                                   smoothed_scp, valley_depth, window_mean)
from acn.model.coherence import PrefixIntegral, feature_integral


@dataclass
class StreamProposals:
    """Post-NMS proposals of one stream of one video, in snippets."""

    segments: np.ndarray   # (N, 2) snippets
    scores: np.ndarray     # (N,)
    labels: np.ndarray     # (N,) class index


#: ``(segments (N, 2), scores (N,), labels (N,), whole (N,) bool)``: ``whole`` marks the
#: whole-video proposals (``localize.whole_video``), which :func:`suppress` may treat apart.
Scored = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]

#: ``localize.whole_video``: no whole-video proposal | scored by -L among the others |
#: ranked above every other proposal (by the class's video score) and kept out of NMS.
WHOLE_VIDEO_MODES = ("off", "scored", "first")

#: Under ``whole_video: first`` a whole-video proposal scores this plus the class's video
#: score plus ``localize.video_score_weight`` and ``localize.attention_weight``: above every
#: -L score, which lies in [-3, 3] (L_OIC in [-1, 1], Lc - 1 in [-2, 0]) before the
#: video-score and attention terms.
WHOLE_FIRST_OFFSET = 4.0


def whole_video_mode(value) -> str:
    """``localize.whole_video`` as one of :data:`WHOLE_VIDEO_MODES` (``false`` and ``true``
    are the older spellings of ``off`` and ``scored``)."""
    if value is None or value is False:
        return "off"
    if value is True:
        return "scored"
    if value not in WHOLE_VIDEO_MODES:
        raise AcnError(f"localize.whole_video must be one of {list(WHOLE_VIDEO_MODES)}, "
                       f"got {value!r}")
    return value


def score_candidates(cfg: Mapping, feats: torch.Tensor | list[torch.Tensor], out,
                     regs: dict[int, torch.Tensor], attention_threshold: float,
                     candidate_scps: list[np.ndarray] | None = None,
                     lc_cache: dict[str, PrefixIntegral] | None = None,
                     lc_keys: list[str] | None = None,
                     group_weights: list[float] | None = None) -> Scored | None:
    """Score one video's candidate proposals (before NMS).

    ``feats``: ``(T, D)``, or a list of per-stream ``(T, D_k)`` (joint fusion): then Lc is the
    mean of the streams' Lc (each stream's cosines count equally whatever its feature scale)
    for CAS segments, and the cosine of the concatenated features for anchor proposals.
    ``candidate_scps``: further ``(C, T)`` SCPs whose CAS segments join the candidates (scored
    on ``out.scp`` like the rest). ``lc_cache``/``lc_keys``: the Lc prefix tables of each
    entry of ``feats`` are looked up in (or added to) ``lc_cache`` under these keys, so that
    scoring one video for a stream and again for the joint fusion builds each stream's tables
    once; without it each stream's tables are freed as soon as they are used (one stream's at
    a time). ``group_weights``: the weight of each entry of ``feats`` in the mean Lc (default
    equal; a stream of weight 0 is not scored at all).

    ``cfg``: the config (its ``acn`` and ``localize`` sections are read); ``out``: the
    video's base outputs (``scp``, ``attention``, ``video_scores``); ``regs``: ``{anchor: this
    video's regression outputs}`` (values None without regression).

    With ``localize.attention_weight`` w > 0 every candidate's score gains w times its
    :func:`~acn.localize.segments.attention_contrast`, and (``localize.attention_candidates``)
    the CAS segments of the SCP times the attention probability join the candidates. Where
    :func:`valley_weight` is above 0 every candidate's score loses that weight times the
    :func:`~acn.localize.segments.valley_depth` of its class's SCP (over
    ``localize.valley_window`` snippets) inside it.

    Returns :data:`Scored` (segments in snippets), or None where no candidate is left.
    """
    acn, loc = cfg["acn"], cfg["localize"]
    groups = feats if isinstance(feats, list) else [feats]
    T = groups[0].shape[0]

    cache = {} if lc_cache is None else lc_cache
    keys = lc_keys or [str(k) for k in range(len(groups))]

    def integral(j: int) -> PrefixIntegral:  # built on first use, once per call at most
        if keys[j] not in cache:
            cache[keys[j]] = feature_integral(groups[j], acn["lc_features"])
        return cache[keys[j]]

    def release(j: int) -> None:  # a table nobody reuses: free it before the next one
        if lc_cache is None:
            cache.pop(keys[j], None)

    regressions = {a: (r if acn["regression"] else None) for a, r in regs.items() if a <= T}
    if not regressions:  # shorter than every anchor: the whole video is the proposal
        regressions = {T: None}
    classes = select_classes(torch.from_numpy(out.video_scores), acn["video_score_threshold"])
    scp = torch.from_numpy(out.scp)
    scp_thr = scp_thresholds(scp, classes, acn["scp_threshold"], acn["scp_threshold_mode"])
    parts = []
    if acn["proposals"] in ("anchors", "both"):
        # one stream: its cached tables; joint: the cosine of the concatenated features
        feats = groups[0] if len(groups) == 1 else torch.cat(groups, 1)
        sp = score_video(feats, scp, regressions, classes,
                         attention=torch.from_numpy(out.attention),
                         attention_threshold=attention_threshold,
                         alpha=acn["alpha"], scp_threshold=scp_thr,
                         score_terms=acn["score_terms"], attention_mode=acn["attention_mode"],
                         lc_features=acn["lc_features"], inflation=acn["inflation"],
                         one_per_position_at_test=loc["one_per_position"],
                         lc_integral=(integral(0) if len(groups) == 1 and classes.numel()
                                      else None))
        parts.append((sp.segments.double(), sp.scores.double(), sp.labels,
                      torch.zeros(len(sp.scores), dtype=torch.bool)))
    listed = []  # (row in classes, start, end) candidates scored one by one (float: the
    # CAS segments' boundaries may lie inside a snippet)
    att_w = attention_weight(loc)
    if acn["proposals"] in ("cas", "both") and classes.numel():
        cls = classes.numpy()
        extra = list(candidate_scps or [])
        if att_w and loc["attention_candidates"]:
            # the SCP weighted by the class-agnostic attention: where the SCP alone is flat
            # over an action and its context, the attention separates them
            extra.append(out.scp * attention_probability(out.attention)[None].astype(np.float32))
        if long_candidates_on(acn, loc):
            extra += [smoothed_scp(out.scp, f) for f in acn["long_windows"]]
        listed += [np.stack(cas_candidates(c[cls], acn["cas_thresholds"],
                                           acn["cas_min_length"], acn["cas_subsnippet"]), 1)
                   for c in [out.scp, *extra]]
    whole_mode = whole_video_mode(loc["whole_video"])
    if whole_mode != "off" and classes.numel():
        # where actions fill most of each video (ActivityNet) the whole video is often
        # the best proposal
        k = classes.numel()
        listed.append(np.stack([np.arange(k), np.zeros(k, np.int64), np.full(k, T)], 1))
    if listed:
        trip = np.unique(np.concatenate(listed).astype(np.float64), axis=0)
        rows, st, en = trip[:, 0].astype(np.int64), trip[:, 1], trip[:, 2]
        lab = classes[torch.from_numpy(rows)]
        s2, e2 = regress_segments(torch.from_numpy(st), torch.from_numpy(en), T, regressions)
        whole = torch.from_numpy((st == 0) & (en == T)) if whole_mode != "off" else (
            torch.zeros(len(st), dtype=torch.bool))
        # the whole video stays whole: the regression nets never saw a proposal that long
        s2 = torch.where(whole, torch.zeros_like(s2), s2)
        e2 = torch.where(whole, torch.full_like(e2, float(T)), e2)
        # -L is linear in Lc, so the mean of per-stream scores on one SCP is -L with the
        # streams' mean Lc
        gw = group_weights or [1.0 / len(groups)] * len(groups)
        sc = None
        for j in range(len(groups)):  # one stream's Lc tables in memory at a time
            if gw[j] == 0:
                continue
            part = gw[j] * score_segments(integral(j), scp, lab, s2, e2, acn["inflation"],
                                          acn["alpha"], acn["score_terms"])
            sc = part if sc is None else sc + part
            release(j)
        parts.append((torch.stack([s2, e2], 1), sc, lab, whole))
    if not parts or sum(len(p[1]) for p in parts) == 0:
        return None
    seg = torch.cat([p[0] for p in parts])
    sc = torch.cat([p[1] for p in parts])
    lab = torch.cat([p[2] for p in parts])
    whole = torch.cat([p[3] for p in parts])
    vs = torch.from_numpy(out.video_scores).double()[lab]
    if loc["video_score_weight"]:
        sc = sc + loc["video_score_weight"] * vs
    if att_w:
        sc = sc + att_w * attention_contrast(out.attention, seg[:, 0], seg[:, 1],
                                             acn["inflation"])
    valley_w = valley_weight(loc)
    if valley_w:
        # a coherent action is one hump of its class's CAS; a valley inside a candidate
        # splits it into two instances (the whole video, one proposal by design, is exempt)
        depth = valley_depth(window_mean(out.scp, int(loc["valley_window"])), lab.numpy(),
                             seg[:, 0].numpy(), seg[:, 1].numpy())
        sc = sc - valley_w * torch.from_numpy(np.where(whole.numpy(), 0.0, depth))
    if whole_mode == "first" and bool(whole.any()):
        # the whole-video guess first, in the order of the video scores across videos, and
        # ACN's proposals after it: appended lower-ranked detections cannot lower a class's AP,
        # so where actions fill the videos ACN keeps at least the guess's AP
        sc = torch.where(whole, WHOLE_FIRST_OFFSET + abs(loc["video_score_weight"]) + att_w
                         + vs, sc)
    return seg, sc, lab, whole


def long_candidates_on(acn: Mapping, loc: Mapping) -> bool:
    """Whether the CAS segments of the smoothed SCP join the candidates
    (``acn.long_candidates``): ``auto`` follows ``localize.whole_video``, whose choice on
    the carved split says whether actions fill most of each video (ActivityNet-like data,
    where they gained 2.6 to 8.7 mAP@0.5; on THUMOS14-like data they lost up to 1.4)."""
    mode = acn.get("long_candidates", "off")
    on = (whole_video_mode(loc["whole_video"]) != "off") if mode == "auto" else mode == "on"
    if on:
        windows = acn.get("long_windows")
        if not isinstance(windows, list) or not all(
                isinstance(f, (int, float)) and not isinstance(f, bool) and 0 < f <= 1
                for f in windows):
            raise AcnError(f"acn.long_windows must be a list of fractions of the video's "
                           f"length in (0, 1], got {windows!r}")
    return on


def valley_weight(loc: Mapping) -> float:
    """The weight of the valley term (``localize.valley_weight`` where ``localize.valley`` is
    on, else 0): ``auto`` is on where ``localize.whole_video`` is off, i.e. where the carved
    split found actions short and apart (THUMOS14-like data, +0.3 to +1.7 mAP@0.5 on the
    family's selection members); where actions fill the videos a long activity's CAS dips
    inside it, and the term lost 1.4 there (docs/ablation.md, fourteenth round)."""
    mode = loc.get("valley", "off")
    on = (whole_video_mode(loc["whole_video"]) == "off") if mode == "auto" else mode == "on"
    if not on:
        return 0.0
    w, k = loc.get("valley_weight"), loc.get("valley_window")
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not w >= 0:
        raise AcnError(f"localize.valley_weight must be a number >= 0, got {w!r}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise AcnError(f"localize.valley_window must be a whole number of snippets >= 1, "
                       f"got {k!r}")
    return float(w)


def attention_weight(loc: Mapping) -> float:
    """``localize.attention_weight`` as a number >= 0 (null, not chosen, is 0)."""
    w = loc.get("attention_weight")
    if w is None:
        return 0.0
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not w >= 0:
        raise AcnError(f"localize.attention_weight must be a number >= 0 or null, got {w!r}")
    return float(w)


def blend_alpha(at_one: Scored | None, at_zero: Scored | None, alpha: float) -> Scored | None:
    """The :func:`score_candidates` output at ``acn.alpha = alpha`` from its outputs at
    alpha 1 and 0 on the same candidates: -L = alpha (-L_OIC) + (1 - alpha)(1 - Lc), and
    every other term (the video-score and attention terms, the whole-video offset) is the same
    at both ends,
    so a grid of alphas costs two scorings. Only for CAS and whole-video candidates
    (``acn.proposals: cas``): anchor proposals keep one per position by score, which is not
    affine in alpha."""
    if at_one is None or at_zero is None:
        return None
    seg, sc1, lab, whole = at_one
    return seg, alpha * sc1 + (1.0 - alpha) * at_zero[1], lab, whole


def suppress(scored: Scored | None, cfg: Mapping) -> StreamProposals:
    """The proposals NMS keeps (``localize.nms``: greedy, or soft NMS with its decayed
    scores) of :func:`score_candidates`' output; none where it found no candidate.

    With ``localize.whole_video: first`` the whole-video proposals (scored above all others by
    :func:`score_candidates`) skip NMS: they neither suppress nor are suppressed."""
    if scored is None:
        return StreamProposals(np.zeros((0, 2)), np.zeros(0), np.zeros(0, dtype=np.int64))
    seg, sc, lab, whole = scored
    loc = cfg["localize"]
    if whole_video_mode(loc["whole_video"]) == "first" and bool(whole.any()):
        rest = suppress((seg[~whole], sc[~whole], lab[~whole], whole[~whole]), {
            **cfg, "localize": {**loc, "whole_video": "off"}})
        return StreamProposals(np.concatenate([seg[whole].numpy(), rest.segments]),
                               np.concatenate([sc[whole].numpy(), rest.scores]),
                               np.concatenate([lab[whole].numpy(), rest.labels]))
    if loc["nms"] == "greedy":
        keep = nms(seg, sc, lab, iou_threshold=loc["nms_iou"], topk=loc["pre_nms_topk"],
                   max_dets=loc["max_detections"])
    else:
        keep, sc_new = nms(seg, sc, lab, iou_threshold=loc["nms_iou"], method=loc["nms"],
                           sigma=loc["soft_nms_sigma"], topk=loc["pre_nms_topk"],
                           max_dets=loc["max_detections"])
        sc = sc.clone()
        sc[keep] = sc_new
    return StreamProposals(seg[keep].numpy(), sc[keep].numpy(), lab[keep].numpy())


def fuse_proposals(rgb: StreamProposals, flow: StreamProposals, cfg: Mapping) -> StreamProposals:
    """Sec. 3.4: all Flow proposals + discounted RGB ones not overlapping same-class Flow."""
    loc = cfg["localize"]
    f = loc["fusion_rgb_factor"]
    # "Discount" must lower a score whatever its sign (-L can be negative).
    rgb_scores = np.where(rgb.scores >= 0, rgb.scores * f, rgb.scores / max(f, 1e-12))
    fused = fuse_streams(flow.segments, flow.scores, flow.labels, rgb.segments, rgb_scores,
                         rgb.labels, rgb_factor=1.0, iou_threshold=loc["fusion_iou"])
    return StreamProposals(np.asarray(fused.segments), np.asarray(fused.scores),
                           np.asarray(fused.labels))


def check_short(cfg: Mapping, ids: list[str], lengths: Mapping[str, int]) -> None:
    """Videos shorter than the smallest anchor: an error (``localize.short_videos=error``) or
    a warning that each is scored as one whole-video proposal."""
    smallest = min(cfg["acn"]["anchors"])
    short = [v for v in ids if lengths[v] < smallest]
    if not short:
        return
    msg = (f"{len(short)} video(s) are shorter than the smallest anchor ({smallest} snippets), "
           f"e.g. {short[0]!r} with {lengths[short[0]]} snippets")
    if cfg["localize"]["short_videos"] == "error":
        raise AcnError(msg + "; set localize.short_videos=clip to localize them as a whole")
    warnings.warn(msg + "; each is scored as one whole-video proposal", stacklevel=3)
