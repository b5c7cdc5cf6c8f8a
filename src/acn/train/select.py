"""The per-dataset selection steps of :meth:`acn.pipeline.ACN.fit`, on a split carved from
the training videos (the rules they apply, and why, are :mod:`acn.selection`).

:func:`select` trains each stream's base model on the fit split (trying the fallback
recipes where one did not learn; with and without a background class when
``base.background`` is null, keeping the better, :func:`_choose_background`) and chooses the
fusion's RGB weight, ``acn.alpha`` and the
whole-video proposals and the NMS IoU (:func:`choose_scoring`); :func:`check_regression` keeps the
regression nets only where they beat the CAS boundaries; :func:`choose_anchors` sizes the
anchors from the CAS. Values left null that nothing chose take their fallbacks
(:func:`fill_unchosen`). The functions take the :class:`~acn.pipeline.ACN` being fitted as
``model`` and write what they choose into ``model.cfg`` and ``model.log``.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch

from acn import selection
from acn.batching import STREAM_INDEX, STREAMS
from acn.data.features import Dataset
from acn.errors import AcnError
from acn.localize.segments import cas_candidates
from acn.localize.video import (WHOLE_VIDEO_MODES, blend_alpha, score_candidates,
                                suppress, whole_video_mode)
from acn.model.coherence import PrefixIntegral
from acn.selection import ALPHA_FALLBACK, CHOSEN_FALLBACKS
from acn.train import base as bt
from acn.train import distributed as dist
from acn.train import outputs as bo
from acn.train.outputs import mean_outputs
from acn.train.regression import train_regression
from acn.train.stages import StreamModel, input_statistics, lc_source_for, stream_recipe

#: The values :func:`choose_scoring` chooses on the carved videos' localization mAP.
SCORING_KEYS = (("localize", "rgb_weight"), ("acn", "alpha"), ("localize", "whole_video"),
                ("localize", "nms_iou"), ("acn", "lc_features"), ("localize", "attention_weight"))


def lc_inputs(model, ds: Dataset, vid: str, lc_features: str,
              bases: dict[str, torch.nn.Module] | None) -> list[torch.Tensor]:
    """The ``[rgb, flow]`` ``(T, D_s)`` tensors Lc is computed on for one video: its features,
    or with ``lc_features == "embedding"`` each stream's embedding by ``bases[stream]``."""
    feats = [torch.from_numpy(f) for f in ds.features(vid, model.feature_dim)]
    if lc_features != "embedding":
        return feats
    if not bases:
        raise AcnError("acn.lc_features 'embedding' needs the base models (none given)")
    with torch.inference_mode():
        return [bases[s].eval().embed(f[None], torch.ones(1, f.shape[0], dtype=torch.bool))[0]
                for s, f in zip(STREAMS, feats)]


def fill_unchosen(model) -> None:
    """Values left null that nothing chose (no carved split) take their fallbacks, so
    that RUN/config.yaml says what was used."""
    cfg = model.cfg
    for (sec, key), fallback in CHOSEN_FALLBACKS.items():
        if cfg[sec][key] is None:
            cfg[sec][key] = copy.deepcopy(fallback)
    a = cfg["acn"]["alpha"]
    if isinstance(a, bool) or not isinstance(a, (int, float)) or not 0.0 <= a <= 1.0:
        raise AcnError(f"acn.alpha must be a number in [0, 1] or null, got {a!r}")
    model.rgb_weight()  # the same check for localize.rgb_weight


def selection_pending(model) -> bool:
    """Whether something is left to choose on carved training videos."""
    cfg = model.cfg
    return cfg["select"]["validation_fraction"] > 0 and any(
        cfg[sec][key] is None for sec, key in CHOSEN_FALLBACKS)


def select(model, ds: Dataset, ids: list[str], base_cfg: dict,
           stats: dict[str, tuple[np.ndarray, np.ndarray] | None], progress: bool) -> None:
    """Choose each stream's base recipe, whether the base models have a background class,
    and the fusion's RGB weight, alpha, whole-video mode and NMS IoU on a split carved from
    the training videos (:mod:`acn.selection`); write them into ``model.cfg``."""
    cfg, sel = model.cfg, model.cfg["select"]
    seed = int(cfg["seed"])
    fit_ids, val_ids = selection.carve_ids(ids, sel["validation_fraction"], seed)
    t0 = time.perf_counter()
    log: dict = {"fit_videos": len(fit_ids), "validation_videos": len(val_ids)}
    segments = any(ds.video(v).segments for v in val_ids)
    bg = cfg["base"]["background"]
    # a background class is chosen by localization on the carved videos: without segments
    # there it takes its fallback (off)
    backgrounds = ([False, True] if bg is None and segments
                   else [bool(bg) if bg is not None else
                         CHOSEN_FALLBACKS[("base", "background")]])
    variants = {b: _fit_streams(model, ds, fit_ids, val_ids, {**base_cfg, "background": b},
                                stats, progress) for b in backgrounds}
    scoring_pending = any(cfg[sec][key] is None for sec, key in SCORING_KEYS)
    if len(variants) > 1:
        log["background"] = _choose_background(model, ds, val_ids, variants)
    chosen_bg = log.get("background", {}).get("chosen", backgrounds[0])
    cfg["base"]["background"] = chosen_bg
    v = variants[chosen_bg]
    log["streams"] = v["log"]
    if cfg["base"]["per_stream"] is None:
        cfg["base"]["per_stream"] = v["recipes"]
    if "background" in log:  # the scoring choices were made with each variant's models
        for (sec, key), val in log["background"]["choices"][str(chosen_bg).lower()].items():
            cfg[sec][key] = val
        log["scoring"] = log["background"]["scoring"].pop(str(chosen_bg).lower())
        del log["background"]["choices"]
    elif scoring_pending:
        if segments:
            log["scoring"] = choose_scoring(model, ds, val_ids, v["val_outputs"], v["models"])
        else:  # weak labels only: the weights follow classification, alpha its fallback
            w, _, how = selection.choose_rgb_weight(
                ds, val_ids, v["val_outputs"]["rgb"], v["val_outputs"]["flow"],
                sel["rgb_weights"], v["val_maps"])
            if cfg["localize"]["rgb_weight"] is None:
                cfg["localize"]["rgb_weight"] = w
            log["scoring"] = {"criterion": how, "chosen": {"rgb_weight": w}}
    fill_unchosen(model)
    if sel["regression_check"] and cfg["acn"]["regression"] and segments:
        log["regression"] = check_regression(model, ds, fit_ids, val_ids, v["models"],
                                             v["fit_outputs"], progress)
    log["seconds"] = round(time.perf_counter() - t0, 2)
    model.log["selection"] = log


def _fit_streams(model, ds: Dataset, fit_ids: list[str], val_ids: list[str], base_cfg: dict,
                 stats: dict[str, tuple[np.ndarray, np.ndarray] | None],
                 progress: bool) -> dict:
    """Each stream's base model trained on the fit split with ``base_cfg``, trying the
    fallback recipes where it did not learn. Returns ``{"recipes", "val_maps",
    "val_outputs", "models", "fit_outputs", "log"}``, each keyed by stream."""
    cfg, sel = model.cfg, model.cfg["select"]
    seed = int(cfg["seed"])
    out: dict = {k: {} for k in ("recipes", "val_maps", "val_outputs", "models", "fit_outputs",
                                 "log")}
    for si, stream in enumerate(STREAMS):
        fixed = cfg["base"]["per_stream"]
        candidates = ([stream_recipe(model, stream)] if fixed is not None
                      else [{}, *sel["fallback_recipes"]])
        tried, best = [], None
        for over in candidates:
            t1 = time.perf_counter()
            net, info = bt.train_base(ds, fit_ids, stream, {**base_cfg, **over},
                                      seed=seed + si, progress=progress,
                                      device=dist.train_device(),
                                      input_stats=stats[stream])
            net.cpu()
            fit_out = bt.predict_base(net, ds, fit_ids, stream)
            fit_map = bo.classification_map(fit_out, ds, fit_ids)
            val_out = bt.predict_base(net, ds, val_ids, stream)
            val_map = bo.classification_map(val_out, ds, val_ids)
            tried.append({"recipe": over, "train_map": fit_map, "validation_map": val_map,
                          "losses": info["losses"],
                          "seconds": round(time.perf_counter() - t1, 2)})
            ok = selection.learned(fit_map, sel["min_train_map"])
            # a recipe that learned beats one that did not, then the better validation
            if best is None or (ok, val_map) > (best[5], best[1]):
                best = (over, val_map, val_out, net, fit_out, ok)
            if ok:
                break  # this recipe learned: no further search
        for key, val in zip(("recipes", "val_maps", "val_outputs", "models", "fit_outputs"),
                            best[:5]):
            out[key][stream] = val
        out["log"][stream] = {"tried": tried, "chosen": best[0], "validation_map": best[1]}
    return out


def _choose_background(model, ds: Dataset, val_ids: list[str], variants: dict) -> dict:
    """``base.background`` by the carved videos' average mAP of ACN's joint -L scoring with
    each variant's base models (the scoring values chosen for each variant as
    :func:`choose_scoring` does); a lead under ``select.tolerance`` goes to the fallback (no
    background class). On the family's selection members the background class moved fused
    ACN by -2.7 to +7.8 mAP@0.5 per seed depending on the data (docs/ablation.md), so no
    one value suits every dataset. Returns the log, with each variant's chosen scoring values under
    ``choices`` (read and removed by :func:`select`)."""
    cfg = model.cfg
    saved = {k: copy.deepcopy(cfg[k[0]][k[1]]) for k in SCORING_KEYS}
    scores, choices, scoring = {}, {}, {}
    for b, v in variants.items():
        name = str(b).lower()
        try:
            if any(val is None for val in saved.values()):
                scoring[name] = choose_scoring(model, ds, val_ids, v["val_outputs"],
                                               v["models"])
                scores[(float(b),)] = scoring[name]["score"]
            else:  # nothing else to choose: score the variant as configured
                scores[(float(b),)] = _joint_score(model, ds, val_ids, v["val_outputs"],
                                                   v["models"])
                scoring[name] = {"score": scores[(float(b),)]}
            choices[name] = {k: copy.deepcopy(cfg[k[0]][k[1]]) for k in SCORING_KEYS}
        finally:
            for (sec, key), val in saved.items():
                cfg[sec][key] = copy.deepcopy(val)
    fallback = float(CHOSEN_FALLBACKS[("base", "background")])
    chosen = bool(selection.best_choice(scores, (fallback,), cfg["select"]["tolerance"])[0])
    return {"criterion": f"average mAP over tIoU {selection.default_tious(ds)} of ACN's joint "
                         "-L scoring of CAS proposals (no regression) with each variant's base "
                         "models and its own scoring choices",
            "scores": {str(bool(k[0])).lower(): s for k, s in scores.items()},
            "chosen": chosen, "choices": choices, "scoring": scoring}


def _joint_score(model, ds: Dataset, val_ids: list[str],
                 val_outputs: dict[str, dict[str, bo.BaseOutputs]],
                 bases: dict[str, torch.nn.Module] | None) -> float:
    """Carved average mAP of the joint -L scoring with the configured values."""
    loc = model.cfg["localize"]
    return _nms_scores(model, ds, val_ids, val_outputs, [loc["nms_iou"]], bases)[
        (float(loc["nms_iou"]),)]


def check_regression(model, ds: Dataset, fit_ids: list[str], val_ids: list[str],
                     models: dict[str, torch.nn.Module],
                     fit_outputs: dict[str, dict[str, bo.BaseOutputs]],
                     progress: bool) -> dict:
    """Whether the regressed boundaries beat the CAS boundaries on this data.

    Regression nets trained on the fit split (with the selection base models) localize
    the carved videos with and without regression (joint fusion, the chosen weight and
    alpha). Regression is kept only where it wins by more than
    ``select.regression_margin`` (average mAP) and does so on at least
    ``select.regression_support`` of bootstrap resamples of the carved videos: on most of
    the family the nets moved boundaries that the CAS had placed better (member 4: 23.6
    vs 29.1 mAP@0.5), and on member 7 a 2-point lead on the carved videos was noise (32.7
    vs 36.4 on the test videos); on ActivityNet-like data they win by 7 points.
    Anchors still null are chosen here, from the fit split's CAS."""
    import copy

    cfg = model.cfg
    labels = {v: [ds.annotations.class_index(lab, f"video {v}") for lab in ds.video(v).labels]
              for v in fit_ids}
    if cfg["acn"]["anchors"] is None:
        choose_anchors(model, ds, fit_ids, fit_outputs, labels)
    probe = type(model)(copy.deepcopy(cfg))  # an ACN like the one being fitted
    probe.classes, probe.feature_dim = model.classes, model.feature_dim
    t0 = time.perf_counter()
    for si, s in enumerate(STREAMS):
        thr = bo.calibrate_attention(fit_outputs[s], cfg["base"]["attention_percentile"])
        probe.models[s] = StreamModel(models[s], None, thr)  # type: ignore[arg-type]
    for si, s in enumerate(STREAMS):
        col = STREAM_INDEX[s]
        cache: dict[str, np.ndarray] = {}

        def feats(vid: str, col: int = col, cache: dict = cache) -> np.ndarray:
            if vid not in cache:
                cache[vid] = ds.features(vid, model.feature_dim)[col]
            return cache[vid]

        probe.models[s].nets, _ = train_regression(
            feats, fit_ids, probe.scored_outputs(fit_outputs, s), labels, model.feature_dim,
            cfg["acn"], cfg["train"], seed=int(cfg["seed"]) + 10 + si, progress=progress,
            desc=f"{s} regression (carved split)",
            input_stats=input_statistics(models[s]) if cfg["data"]["standardize"] else None,
            lc_source=lc_source_for(cfg, models[s], feats))
    dets = {}
    for reg in (True, False):
        probe.cfg["acn"]["regression"] = reg
        dets[reg] = probe.localize(ds, val_ids, ["fused"], progress=False)["fused"]
    margin = cfg["select"]["regression_margin"]
    verdict = selection.keep_regression(ds, val_ids, dets[True], dets[False], margin,
                                        cfg["select"]["regression_support"], int(cfg["seed"]))
    cfg["acn"]["regression"] = verdict["regression"]
    return {"criterion": f"average mAP over tIoU {selection.default_tious(ds)} of fused "
                         "ACN on the carved videos, nets trained on the fit split; kept "
                         f"when ahead by > {margin:g} there and on >= "
                         f"{cfg['select']['regression_support']:g} of bootstrap resamples",
            **verdict, "seconds": round(time.perf_counter() - t0, 2)}


def choose_scoring(model, ds: Dataset, val_ids: list[str],
                   val_outputs: dict[str, dict[str, bo.BaseOutputs]],
                   bases: dict[str, torch.nn.Module] | None = None) -> dict:
    """``localize.rgb_weight``, ``acn.alpha``, ``localize.whole_video``,
    ``localize.attention_weight`` and ``acn.lc_features`` (those left null) by the average mAP
    of ACN's own scoring (-L of the joint fusion, before regression) of the carved videos,
    over the grid ``select.rgb_weights`` x ``select.alphas`` x (the whole-video modes) x
    ``select.attention_weights``, for each of ``select.lc_features`` in turn; then
    ``acn.alpha`` alone among ``select.alpha_refinement`` at the values chosen (the first
    choice kept unless another leads by ``select.tolerance``); then ``localize.nms_iou``.

    Within one Lc source a lead under ``select.tolerance`` goes to the fallback values; the
    Lc source is the one whose best grid point scores higher (a tie goes to the fallback),
    with no margin: on the family each source leads on some members (the base models'
    embedding on THUMOS14-like data, the standardised features on ActivityNet-like data),
    so neither is the safe default that a margin protects. ``bases``: the base models
    whose embedding ``"embedding"`` reads (without them it is not a candidate)."""
    cfg, sel, loc = model.cfg, model.cfg["select"], model.cfg["localize"]
    refine = [float(x) for x in sel.get("alpha_refinement") or []]
    if any(not 0.0 <= x <= 1.0 for x in refine):  # before any scoring
        raise AcnError(f"select.alpha_refinement: alphas lie in [0, 1], got {refine}")
    ws = ([loc["rgb_weight"]] if loc["rgb_weight"] is not None
          else selection.check_weights(sel["rgb_weights"]))
    alphas = [cfg["acn"]["alpha"]] if cfg["acn"]["alpha"] is not None else sel["alphas"]
    # whole-video modes as their index in WHOLE_VIDEO_MODES, so that best_choice can measure
    # the distance to the fallback ("off")
    wholes = ([WHOLE_VIDEO_MODES.index(whole_video_mode(loc["whole_video"]))]
              if loc["whole_video"] is not None else list(range(len(WHOLE_VIDEO_MODES))))
    lc_fallback = CHOSEN_FALLBACKS[("acn", "lc_features")]
    lcs = ([cfg["acn"]["lc_features"]] if cfg["acn"]["lc_features"] is not None
           else [lc for lc in selection.check_lc_candidates(sel["lc_features"])
                 if lc != "embedding" or bases])
    if not lcs:
        raise AcnError("select.lc_features: no candidate is usable here ('embedding' needs "
                       "acn's own base models)")
    atts = ([float(loc["attention_weight"])] if loc.get("attention_weight") is not None
            else selection.check_attention_weights(sel["attention_weights"]))
    scores = _grid_scores(model, ds, val_ids, val_outputs, bases, lcs, ws, alphas, wholes, atts)
    prefer = (0.5, ALPHA_FALLBACK, WHOLE_VIDEO_MODES.index(
        CHOSEN_FALLBACKS[("localize", "whole_video")]), selection.ATTENTION_PREFERRED)
    best = {lc: selection.best_choice({k[1:]: v for k, v in scores.items() if k[0] == lc},
                                      prefer, sel["tolerance"]) for lc in lcs}
    lc = max(lcs, key=lambda c: (scores[(c, *best[c])], c == lc_fallback))
    w, a, h, att = best[lc]
    alpha_scores = {}
    if cfg["acn"]["alpha"] is None and set(refine) - set(alphas):
        # then alpha alone, at the weight, whole-video mode and Lc features just chosen: with
        # the whole grid over the finer alphas, 40 carved videos' noise picked another weight
        # (family member 6: -1.7 mAP@0.5 on its test videos)
        alpha_scores = {k[2:3]: v for k, v in _grid_scores(
            model, ds, val_ids, val_outputs, bases, [lc], [w], sorted(set(refine) | {a}),
            [h], [att]).items()}
        a = selection.best_choice(alpha_scores, (a,), sel["tolerance"])[0]
    if loc["rgb_weight"] is None:
        loc["rgb_weight"] = w
    if loc.get("attention_weight") is None:
        loc["attention_weight"] = att
    if cfg["acn"]["alpha"] is None:
        cfg["acn"]["alpha"] = a
    if loc["whole_video"] is None:
        loc["whole_video"] = WHOLE_VIDEO_MODES[h]
    if cfg["acn"]["lc_features"] is None:
        cfg["acn"]["lc_features"] = lc
    nms_scores = {}
    if loc["nms_iou"] is None:  # then the NMS IoU, with the values just chosen
        fallback = CHOSEN_FALLBACKS[("localize", "nms_iou")]
        nms_scores = _nms_scores(model, ds, val_ids, val_outputs, sel["nms_ious"], bases)
        loc["nms_iou"] = selection.best_choice(nms_scores, (fallback,), sel["tolerance"])[0]
    score = (nms_scores[(loc["nms_iou"],)] if nms_scores
             else alpha_scores[(a,)] if alpha_scores else scores[(lc, w, a, h, att)])
    return {"criterion": f"average mAP over tIoU {selection.default_tious(ds)} of ACN's "
                         "joint -L scoring of CAS proposals (no regression)",
            "chosen": {"rgb_weight": w, "alpha": a, "whole_video": WHOLE_VIDEO_MODES[h],
                       "lc_features": lc, "attention_weight": att, "nms_iou": loc["nms_iou"]},
            "score": score,
            "scores": {f"lc={k[0]} w={k[1]:g} alpha={k[2]:g} "
                       f"whole_video={WHOLE_VIDEO_MODES[k[3]]} attention={k[4]:g}": v
                       for k, v in scores.items()},
            "alpha_scores": {f"{k[0]:g}": v for k, v in alpha_scores.items()},
            "nms_scores": {f"{k[0]:g}": v for k, v in nms_scores.items()}}


def _grid_scores(model, ds: Dataset, val_ids: list[str],
                 val_outputs: dict[str, dict[str, bo.BaseOutputs]],
                 bases: dict[str, torch.nn.Module] | None, lcs: list[str], ws: list[float],
                 alphas: list[float], wholes: list[int], atts: list[float]
                 ) -> dict[tuple, float]:
    """Carved average mAP of ACN's joint -L scoring (no regression) at each point
    ``(lc, w, alpha, whole, attention weight)`` of the grid (``whole``: an index in
    WHOLE_VIDEO_MODES)."""
    cfg, loc = model.cfg, model.cfg["localize"]
    grid = [(w, a, h, t) for w in ws for a in alphas for h in wholes for t in atts]
    dets: dict[tuple, dict] = {(lc, *k): {} for lc in lcs for k in grid}
    # -L is affine in alpha on CAS candidates: score each (weight, whole-video mode,
    # attention weight) at alpha 1 and 0 and blend, instead of once per alpha
    blend = cfg["acn"]["proposals"] == "cas" and len(alphas) > 1
    saved = (cfg["acn"]["alpha"], loc["whole_video"], loc["nms_iou"],
             cfg["acn"]["lc_features"], loc.get("attention_weight"))
    if loc["nms_iou"] is None:  # chosen after the grid, with the values chosen on it
        loc["nms_iou"] = CHOSEN_FALLBACKS[("localize", "nms_iou")]
    try:
        for v in val_ids:
            one = {s: {v: val_outputs[s][v]} for s in STREAMS}
            for lc in lcs:  # one video's Lc tables at a time, shared by the whole grid
                feats = lc_inputs(model, ds, v, lc, bases)
                cfg["acn"]["lc_features"] = lc
                cache: dict[str, PrefixIntegral] = {}
                for w, h, t in dict.fromkeys((w, h, t) for w, _, h, t in grid):
                    loc["whole_video"] = WHOLE_VIDEO_MODES[h]
                    loc["attention_weight"] = t
                    args = (feats, mean_outputs(one, v, w), {1: None}, float("-inf"))
                    kw = dict(lc_cache=cache, lc_keys=list(STREAMS), group_weights=[w, 1 - w])
                    ends = {}
                    for end in ((1.0, 0.0) if blend else ()):
                        cfg["acn"]["alpha"] = end
                        ends[end] = score_candidates(cfg, *args, **kw)
                    for a in alphas:
                        cfg["acn"]["alpha"] = a
                        p = (suppress(blend_alpha(ends[1.0], ends[0.0], a), cfg) if blend
                             else model._score_one(*args, **kw))
                        dets[(lc, w, a, h, t)][v] = model.to_seconds(ds, v, p)
    finally:
        (cfg["acn"]["alpha"], loc["whole_video"], loc["nms_iou"], cfg["acn"]["lc_features"],
         loc["attention_weight"]) = saved
    return {k: selection.carved_average_map(ds, val_ids, d) for k, d in dets.items()}


def _nms_scores(model, ds: Dataset, val_ids: list[str],
                val_outputs: dict[str, dict[str, bo.BaseOutputs]],
                ious: list[float], bases: dict[str, torch.nn.Module] | None
                ) -> dict[tuple[float], float]:
    """Carved average mAP of the joint -L scoring (chosen weight, alpha, whole-video
    proposals; no regression) under each NMS IoU of ``ious``: long actions that fill a video
    want a looser NMS than short ones (family: 0.6 best on ActivityNet-like data, 0.3-0.4 on
    THUMOS14-like)."""
    loc = model.cfg["localize"]
    w = model.rgb_weight()
    dets: dict[tuple[float], dict] = {(float(t),): {} for t in ious}
    saved = loc["nms_iou"]
    try:
        for v in val_ids:
            feats = lc_inputs(model, ds, v, model.cfg["acn"]["lc_features"], bases)
            one = {s: {v: val_outputs[s][v]} for s in STREAMS}
            cache: dict[str, PrefixIntegral] = {}
            for (t,) in dets:
                loc["nms_iou"] = t
                p = model._score_one(feats, mean_outputs(one, v, w), {1: None}, float("-inf"),
                                    lc_cache=cache, lc_keys=list(STREAMS),
                                    group_weights=[w, 1 - w])
                dets[(t,)][v] = model.to_seconds(ds, v, p)
    finally:
        loc["nms_iou"] = saved
    return {k: selection.carved_average_map(ds, val_ids, d) for k, d in dets.items()}


def choose_anchors(model, ds: Dataset, ids: list[str],
                   outputs: dict[str, dict[str, bo.BaseOutputs]],
                   labels: dict[str, list[int]]) -> None:
    """``acn.anchors`` from the lengths of the CAS segments (the fusion's weighted mean
    SCP, labelled classes, the config's levels) of the training videos."""
    acn = model.cfg["acn"]
    w = model.rgb_weight()
    lengths = []
    for v in ids:
        if not labels.get(v):
            continue
        scp = mean_outputs(outputs, v, w).scp[sorted(labels[v])]
        _, st, en = cas_candidates(scp, acn["cas_thresholds"], acn["cas_min_length"])
        lengths.append(en - st)
    found = np.concatenate(lengths) if lengths else np.zeros(0)
    acn["anchors"] = selection.data_anchors(found)
    model.log["anchors"] = {
        "chosen": acn["anchors"], "cas_segments": int(found.size),
        "cas_length_percentiles_10_50_90": (np.percentile(found, [10, 50, 90]).tolist()
                                            if found.size else None)}
