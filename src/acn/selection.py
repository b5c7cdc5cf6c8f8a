"""Choices made per dataset, on a validation split carved from its TRAINING videos.

A recipe chosen on one dataset does not transfer to features of another kind: on held-out
features a Flow base model trained with the recipe tuned on our synthetic data never learned
(training classification mAP 0.56), and an equal-weight joint fusion averaged a weak RGB
stream in and lost 14.5 mAP points against Flow alone. So ``ACN.fit`` carves
``select.validation_fraction`` of the training videos off (by video, seeded; :func:`carve_ids`)
and, on that split only (never the test subset):

1. **checks that each stream's base model learned** (:func:`learned`): training
   classification mAP at least ``select.min_train_map``. A stream that did not is retrained
   with each of ``select.fallback_recipes`` (lower weight decay, higher learning rate, more
   epochs) until one learns (if none does, the one with the best carved-validation
   classification mAP is kept). A stream that still did not learn is reported (terminal and
   ``train_log.json``);
2. **chooses whether the base models have a background class** (``base.background``): both
   variants are trained on the fit split, each scored as in 3; the better carved average
   mAP wins, a lead under ``select.tolerance`` going to no background class;
3. **weighs the two streams, the two loss terms and the attention, picks Lc's features, the
   candidates and the NMS** (``localize.rgb_weight``, ``acn.alpha``,
   ``localize.attention_weight``, ``localize.whole_video``, ``acn.lc_features``, then
   ``localize.nms_iou``): the values whose joint -L scoring of the
   proposals scores the best average mAP on the carved videos, a lead under
   ``select.tolerance`` going to the fallback (:func:`best_choice`; RGB weights 0 and 1 are
   candidates, so a weak stream can be left out entirely; Lc's features go to the higher
   score, see :func:`acn.train.select.choose_scoring`; then α alone among the finer
   ``select.alpha_refinement``, at the values chosen). Without segment annotations on the
   training videos the weight follows the streams' carved-validation classification mAP
   instead (:func:`choose_rgb_weight`) and the rest take their fallbacks
   (:data:`CHOSEN_FALLBACKS`);
4. **checks the regression nets**: nets trained on the fit split localize the carved videos
   with and without regression; regression is kept only where it wins by a margin on the
   carved videos and on most bootstrap resamples of them (:func:`bootstrap_win_rate`);
5. **sizes the anchors** from the CAS segment lengths (:func:`data_anchors`).

The base models are then trained again on all training videos with the chosen recipes and
the chosen values are written to ``RUN/config.yaml``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from acn.data.features import Dataset
from acn.errors import AcnError

#: The carved videos' subset name in a carved copy of the annotations.
HELDOUT = "heldout"
#: ``acn.alpha`` when it is null and nothing chose it (no carved split, or no segments there).
ALPHA_FALLBACK = 0.9
#: The config values chosen per dataset when left null, and what each takes when nothing
#: chose it (no carved split, or no segments on it): ``(section, key): fallback``.
CHOSEN_FALLBACKS: dict[tuple[str, str], object] = {
    ("base", "per_stream"): {},
    ("base", "background"): False,
    ("localize", "rgb_weight"): 0.5,
    ("acn", "alpha"): ALPHA_FALLBACK,
    ("localize", "whole_video"): "off",
    ("localize", "nms_iou"): 0.4,
    ("acn", "lc_features"): "embedding",
    # no carved split to choose on: the weight with the best worst case over the family's
    # selection members, re-scored (+0.3 to +9.3 mAP@0.5, mean +4.8; docs/ablation.md)
    ("localize", "attention_weight"): 0.4,
}

#: ``localize.attention_weight`` that a carved split's near-ties go to (``select.tolerance``):
#: the paper's scoring, without the attention term, unless the data clearly say otherwise.
ATTENTION_PREFERRED = 0.0


def default_tious_for(ds: Dataset) -> tuple[float, ...]:
    """THUMOS-like data (short actions) 0.1:0.7; ActivityNet-like 0.5:0.95."""
    if "activitynet" in ds.annotations.name.lower():
        return tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
    return tuple(round(0.1 * i, 1) for i in range(1, 8))


def carve_ids(ids: Sequence[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Split training video ids into ``(fit, validation)``: ``round(fraction * N)`` videos
    (at least 1, at most N - 1) drawn by video with a generator seeded by ``seed``; both lists
    keep the order of ``ids``."""
    if not 0.0 < fraction < 1.0:
        raise AcnError(f"validation fraction must be in (0, 1), got {fraction}")
    ids = list(ids)
    if len(ids) < 2:
        raise AcnError(f"cannot carve a validation split from {len(ids)} training video(s)")
    n = min(len(ids) - 1, max(1, int(round(fraction * len(ids)))))
    pick = set(np.random.default_rng([seed, 0x5E1]).choice(ids, n, replace=False).tolist())
    return [v for v in ids if v not in pick], [v for v in ids if v in pick]


def carved_dataset(ds: Dataset, val_ids: Sequence[str]) -> Dataset:
    """A copy of ``ds`` whose ``val_ids`` form the subset :data:`HELDOUT` (the test subset of
    the copy), so that evaluation code can score detections on them."""
    pick = set(val_ids)
    ann = ds.annotations
    videos = {k: (dataclasses.replace(v, subset=HELDOUT) if k in pick else v)
              for k, v in ann.videos.items()}
    return dataclasses.replace(ds, annotations=dataclasses.replace(ann, videos=videos,
                                                                   test_subset=HELDOUT))


def learned(train_map: float, min_train_map: float) -> bool:
    """Whether a base model learned: its training classification mAP (video scores of the
    training videos against their labels) reaches ``min_train_map``. Its net fits its own
    training labels almost perfectly whenever optimisation works (0.95-1.0 on every dataset
    we tried, raw or standardised), so a low value means it did not learn, not hard data."""
    return bool(np.isfinite(train_map) and train_map >= min_train_map)


def not_learned_message(stream: str, train_map: float, val_map: float | None,
                        losses: Sequence[float] | None, tried: int) -> str:
    """The warning for a stream whose base model did not learn: what was seen, what to try."""
    curve = (f"; loss {losses[0]:.2f} -> {losses[-1]:.2f} over {len(losses)} epochs"
             if losses else "")
    val = f", carved-validation {100 * val_map:.1f}" if val_map is not None else ""
    return (f"the {stream} base model did not learn: training classification mAP "
            f"{100 * train_map:.1f}{val}{curve} after {tried} recipe(s). Its detections will be "
            f"poor. Try: check that the {stream} features vary with the action (not constant, "
            "not shuffled against the labels), --set base.epochs=60, --set base.lr=0.003, "
            "--set base.weight_decay=0.0005, or --stream with the other stream alone")


def weighted_outputs(rgb: Mapping, flow: Mapping, rgb_weight: float) -> dict:
    """``{video: BaseOutputs}`` with ``w * rgb + (1 - w) * flow`` of SCP, attention and video
    scores, for the videos in ``rgb`` (copies of ``rgb``'s :class:`~acn.train.outputs.BaseOutputs`
    with the weighted values: this module does not import :mod:`acn.train`, which imports it)."""
    w = float(rgb_weight)
    out = {}
    for v, r in rgb.items():
        f = flow[v]
        out[v] = dataclasses.replace(r, scp=w * r.scp + (1 - w) * f.scp,
                                     attention=w * r.attention + (1 - w) * f.attention,
                                     video_scores=w * r.video_scores + (1 - w) * f.video_scores)
    return out


def carved_average_map(ds: Dataset, val_ids: Sequence[str], detections: Mapping) -> float:
    """Average mAP (ActivityNet protocol, the dataset's default tIoUs) of ``detections``
    (``{video: [(start_s, end_s, label, score)]}``) on the carved videos ``val_ids``."""
    from acn.evaluate import evaluate

    carved = carved_dataset(ds, val_ids)
    res = evaluate(carved.annotations, dict(detections), HELDOUT, "activitynet",
                   tious=default_tious_for(ds))
    return res.average


def bootstrap_win_rate(ds: Dataset, val_ids: Sequence[str], a: Mapping, b: Mapping,
                       margin: float = 0.0, rounds: int = 200, seed: int = 0) -> float:
    """How often detections ``a`` beat ``b`` by more than ``margin`` average mAP on the carved
    videos resampled with replacement (a paired bootstrap over videos, ``rounds`` draws).

    40 carved videos are few: one method's lead of 2 points on them turned into a 3-point loss
    on the test videos. A choice that wins on most resamples is one the data supports.
    ``a``/``b``: ``{video: [(start_s, end_s, label, score)]}``. Returns a fraction in [0, 1].
    """
    from acn.evaluate import evaluate

    ids = list(val_ids)
    ann = ds.annotations
    tious = default_tious_for(ds)
    rng = np.random.default_rng([seed, 0xB007])
    wins = 0
    for _ in range(rounds):
        draw = rng.integers(0, len(ids), len(ids))
        names = [f"{ids[j]}#{i}" for i, j in enumerate(draw)]
        videos = {n: dataclasses.replace(ann.videos[ids[j]], id=n, subset=HELDOUT)
                  for n, j in zip(names, draw)}
        copy = dataclasses.replace(ann, videos=videos, test_subset=HELDOUT)
        score = [evaluate(copy, {n: list(d.get(ids[j], [])) for n, j in zip(names, draw)},
                          HELDOUT, "activitynet", tious=tious).average for d in (a, b)]
        wins += score[0] > score[1] + margin
    return wins / rounds


def keep_regression(ds: Dataset, val_ids: Sequence[str], with_reg: Mapping,
                    without_reg: Mapping, margin: float, support_needed: float,
                    seed: int = 0) -> dict:
    """The regression check's verdict from the carved videos' detections with and without
    the regression nets: kept when ahead by more than ``margin`` average mAP and on at least
    ``support_needed`` of bootstrap resamples (:func:`bootstrap_win_rate`). Returns
    ``{"with_regression", "without_regression", "bootstrap_support", "regression"}``."""
    scores = {True: carved_average_map(ds, val_ids, with_reg),
              False: carved_average_map(ds, val_ids, without_reg)}
    support = (bootstrap_win_rate(ds, val_ids, with_reg, without_reg, margin, seed=seed)
               if scores[True] > scores[False] + margin else 0.0)
    return {"with_regression": scores[True], "without_regression": scores[False],
            "bootstrap_support": support, "regression": bool(support >= support_needed)}


def best_choice(scores: Mapping[tuple[float, ...], float], prefer: tuple[float, ...],
                tolerance: float = 1e-6) -> tuple[float, ...]:
    """Of the keys scoring within ``tolerance`` of the best, the one nearest ``prefer`` (L1
    over the key's entries, booleans as 0/1); among equally near ones the higher score.

    A tolerance above the carved split's noise keeps the fallback unless the data clearly
    says otherwise: on family member 2 an RGB weight of 0.75 led 0.5 by 0.16 points on the
    carved videos and lost 2 points on the test videos."""
    best = max(scores.values())
    near = [k for k in scores if scores[k] >= best - tolerance]
    return min(near, key=lambda k: (sum(abs(float(a) - float(b)) for a, b in zip(k, prefer)),
                                    -scores[k]))


def choose_rgb_weight(ds: Dataset, val_ids: Sequence[str], rgb: Mapping, flow: Mapping,
                      weights: Sequence[float], val_maps: Mapping[str, float] | None = None
                      ) -> tuple[float, dict[str, float], str]:
    """The RGB weight of the joint fusion from the CAS alone, on carved training videos.

    Args:
        ds: the dataset (only ``val_ids``' annotations are read).
        val_ids: carved training videos (never the test subset).
        rgb, flow: ``{video: BaseOutputs}`` of the selection base models on ``val_ids``.
        weights: candidate RGB weights in [0, 1].
        val_maps: ``{"rgb": map, "flow": map}`` carved-validation classification mAP, used
            when the carved videos have no segment annotations.

    Returns:
        ``(weight, {str(weight): average mAP}, criterion)``. The criterion is the average mAP
        over the dataset's default tIoUs of CAS-threshold detections (the in-harness baseline)
        of the weighted mean SCP; ties go to the weight nearest 0.5.
    """
    from acn.baselines import cas_detections

    ws = check_weights(weights)
    if not any(ds.video(v).segments for v in val_ids):
        if not val_maps:
            return 0.5, {}, "no segments on the carved videos: equal weights"
        r, f = val_maps["rgb"], val_maps["flow"]
        w = min(ws, key=lambda x: abs(x - r / max(r + f, 1e-12)))
        return w, {}, "no segments on the carved videos: weights follow classification mAP"
    carved = carved_dataset(ds, val_ids)
    scores = {(w,): carved_average_map(ds, val_ids, cas_detections(
        weighted_outputs(rgb, flow, w), carved)) for w in ws}
    best = best_choice(scores, (0.5,))[0]
    return best, {f"{k[0]:g}": v for k, v in scores.items()}, \
        f"average mAP over tIoU {default_tious(ds)} of CAS detections"


def check_weights(weights: Sequence[float]) -> list[float]:
    ws = sorted({float(w) for w in weights})
    if not ws or any(not 0.0 <= w <= 1.0 for w in ws):
        raise AcnError(f"select.rgb_weights must be numbers in [0, 1], got {list(weights)}")
    return ws


def check_attention_weights(values: Sequence[float]) -> list[float]:
    """``select.attention_weights``: distinct numbers >= 0, ascending."""
    if not values or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0
                         for v in values):
        raise AcnError(f"select.attention_weights must be numbers >= 0, got {list(values)}")
    return sorted({float(v) for v in values})


def check_lc_candidates(values: Sequence[str]) -> list[str]:
    """``select.lc_features``: distinct values of ``acn.lc_features``, in the given order."""
    from acn.config import CHOICES

    out = list(dict.fromkeys(values))
    if not out or any(v not in CHOICES["acn.lc_features"] for v in out):
        raise AcnError(f"select.lc_features must be values of acn.lc_features "
                       f"{list(CHOICES['acn.lc_features'])}, got {list(values)}")
    return out


def default_tious(ds: Dataset) -> str:
    t = default_tious_for(ds)
    return f"{t[0]:g}:{t[-1]:g}"


def data_anchors(cas_lengths: Sequence[float] | np.ndarray, count: int = 6,
                 quantile: float = 0.9, min_largest: int = 32) -> list[int]:
    """Anchor sizes (snippets) that follow the actions' lengths as the CAS sees them.

    ``count`` powers of two ending at the largest, which is the power of two at or above the
    ``quantile`` of the CAS segment lengths of the training videos (at least
    ``min_largest``): THUMOS14-like data (90 % of CAS segments within 18 snippets) gets the
    paper's ``[1, ..., 32]``, ActivityNet-like data (actions of ~45 snippets and more) a set
    like the paper's ``[16, ..., 512]``, without a config file.
    """
    lengths = np.asarray(cas_lengths, dtype=np.float64)
    lengths = lengths[np.isfinite(lengths) & (lengths > 0)]
    q = float(np.quantile(lengths, quantile)) if lengths.size else 1.0
    top = max(int(min_largest), 2 ** int(np.ceil(np.log2(max(q, 1.0)))))
    top_exp = int(round(np.log2(top)))
    return [2 ** e for e in range(max(0, top_exp - count + 1), top_exp + 1)]
