"""The evaluation protocols against loop-by-loop transcriptions of the official code.

The reference functions below are written for clarity, not speed: every loop of the official
code (ActivityNet ``eval_detection.py``; THUMOS14 ``TH14eventdetpr.m``) is a Python loop.
Ground truth is a list of ``(video, label, start, end)`` (order within a video matters for
THUMOS14), detections ``(video, label, start, end, score)`` in input order.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acn.data.annotations import Annotations, Segment, Video
from acn.errors import AcnError
from acn.evaluate import Detections, default_tious, evaluate
from acn.evaluate.activitynet import interpolated_ap, match_greedy
from acn.evaluate.thumos14 import match_gt_driven
from acn.evaluate.tiou import intersects, tiou_matrix


# -- reference implementations ------------------------------------------------------------

def iou_sum(s1: float, e1: float, s2: float, e2: float) -> float:
    """ActivityNet ``segment_iou`` for one pair (0 where they do not intersect)."""
    inter = max(0.0, min(e1, e2) - max(s1, s2))
    if inter <= 0:
        return 0.0
    return inter / ((e1 - s1) + (e2 - s2) - inter)


def overlap_hull(s1: float, e1: float, s2: float, e2: float) -> float:
    """THUMOS14 ``intervalsingleoverlapvalseconds`` with normtype 0."""
    iw = min(e1, e2) - max(s1, s2)
    if iw > 0:
        return iw / (max(e1, e2) - min(s1, s2))
    return 0.0


def interpolated_prec_rec(tp: list[int], npos: int) -> float:
    """ActivityNet ``interpolated_prec_rec`` on a ranked list of TP (1) / FP (0) flags."""
    prec, rec, ntp, nfp = [], [], 0, 0
    for x in tp:
        ntp += x
        nfp += 1 - x
        prec.append(ntp / (ntp + nfp))
        rec.append(ntp / npos)
    mprec = [0.0] + prec + [0.0]
    mrec = [0.0] + rec + [1.0]
    for i in range(len(mprec) - 2, -1, -1):
        mprec[i] = max(mprec[i], mprec[i + 1])
    return sum((mrec[i] - mrec[i - 1]) * mprec[i] for i in range(1, len(mrec))
               if mrec[i] != mrec[i - 1])


def activitynet_ap(gt, dets, classes, tious) -> dict[str, list[float]]:
    """AP per class (classes with ground truth only) and threshold, ActivityNet protocol."""
    out = {}
    for c in classes:
        gts = [(v, s, e) for v, lab, s, e in gt if lab == c]
        if not gts:
            continue
        preds = [(i, d) for i, d in enumerate(dets) if d[1] == c]
        preds.sort(key=lambda p: (-p[1][4], p[1][0], p[0]))  # score desc, video id, input order
        row = []
        for t in tious:
            locked = [False] * len(gts)
            flags = []
            for _, (v, _, s, e, _) in preds:
                best, best_iou = None, -1.0
                for j, (gv, gs, ge) in enumerate(gts):
                    if gv != v or locked[j]:
                        continue
                    iou = iou_sum(s, e, gs, ge)
                    if iou >= t and iou > best_iou:
                        best, best_iou = j, iou
                if best is None:
                    flags.append(0)
                else:
                    flags.append(1)
                    locked[best] = True
            row.append(interpolated_prec_rec(flags, len(gts)))
        out[c] = row
    return out


def thumos14_ap(gt, dets, ambiguous, classes, tious) -> dict[str, list[float]]:
    """AP per class and threshold, TH14eventdetpr as in the MATLAB code (classes need GT)."""
    videonames = sorted({g[0] for g in gt} | {d[0] for d in dets} | {a[0] for a in ambiguous})
    out = {}
    for c in classes:
        npos = sum(1 for g in gt if g[1] == c)
        assert npos > 0
        row = []
        for t in tious:
            unsort = []  # (conf, flag) with flag 1 = TP, 2 = FP
            for v in videonames:
                gtv = [(s, e) for gv, lab, s, e in gt if gv == v and lab == c]
                amb = [(s, e) for av, s, e in ambiguous if av == v]
                det = [(s, e, sc) for dv, lab, s, e, sc in dets if dv == v and lab == c]
                if not det:
                    continue
                det = sorted(det, key=lambda d: -d[2])  # stable, like MATLAB sort
                free = [True] * len(det)
                for gs, ge in gtv:
                    ind = [i for i in range(len(det)) if free[i]]
                    if not ind:
                        continue
                    vals = [overlap_hull(gs, ge, det[i][0], det[i][1]) for i in ind]
                    vm = max(vals)
                    im = vals.index(vm)  # MATLAB max: first maximum
                    if vm > t:
                        free[ind[im]] = False
                for i, (s, e, sc) in enumerate(det):
                    indamb = sum(overlap_hull(a_s, a_e, s, e) for a_s, a_e in amb)
                    if not free[i]:
                        unsort.append((sc, 1))
                    elif indamb == 0:
                        unsort.append((sc, 2))
            ranked = sorted(unsort, key=lambda x: -x[0])  # stable
            ap, ntp, nfp = 0.0, 0, 0
            for _, flag in ranked:
                ntp += flag == 1
                nfp += flag == 2
                if flag == 1:
                    ap += ntp / (ntp + nfp)
            row.append(ap / npos)
        out[c] = row
    return out


# -- helpers -------------------------------------------------------------------------------------
def make_gt(gt, classes, videos, ambiguous=(), subset="test", other=None) -> Annotations:
    """Annotations from ``(video, label, start, end)`` rows; ``videos`` in dict order."""
    vids = {}
    for vid in videos:
        segs = [Segment(s, e, lab) for v, lab, s, e in gt if v == vid]
        amb = [(s, e) for v, s, e in ambiguous if v == vid]
        vids[vid] = Video(id=vid, subset=subset, duration=100.0,
                          labels=tuple(sorted({x.label for x in segs})), segments=segs,
                          ambiguous=amb)
    for vid in other or ():
        vids[vid] = Video(id=vid, subset="train", duration=100.0)
    return Annotations(classes=list(classes), videos=vids, train_subset="train",
                       test_subset=subset, name="toy")


def as_dict(dets, videos=()) -> dict:
    out = {v: [] for v in videos}
    for v, lab, s, e, sc in dets:
        out.setdefault(v, []).append((s, e, lab, sc))
    return out


def quiet_evaluate(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return evaluate(*args, **kwargs)


CLASSES = ["a", "b", "c"]
TIOUS = (0.1, 0.25, 0.5, 0.6, 0.75, 0.95)

_times = st.integers(0, 16).map(lambda x: x / 2)  # a coarse grid: ties, duplicates, exact tIoUs
_segments = st.tuples(_times, _times).map(sorted)  # zero-length segments included
_scores = st.sampled_from([0.2, 0.5, 0.9]) | st.floats(0, 1, allow_nan=False)


@st.composite
def problems(draw):
    names = draw(st.lists(st.sampled_from(["v1", "v2", "v3", "x", "a9"]), min_size=1,
                          max_size=4, unique=True))  # dict order differs from sorted order
    video = st.sampled_from(names)
    label = st.sampled_from(CLASSES)
    gt = draw(st.lists(st.tuples(video, label, _segments).map(lambda r: (r[0], r[1], *r[2])),
                       max_size=10))
    dets = draw(st.lists(st.tuples(video, label, _segments, _scores)
                         .map(lambda r: (r[0], r[1], *r[2], r[3])), max_size=25))
    amb = draw(st.lists(st.tuples(video, _segments).map(lambda r: (r[0], *r[1])), max_size=3))
    return names, gt, dets, amb


FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEWER = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- against the reference -----------------------------------------------------------------------
@FAST
@given(problems())
def test_activitynet_matches_reference(problem):
    names, gt, dets, amb = problem
    ann = make_gt(gt, CLASSES, names, amb)
    expected = activitynet_ap(gt, dets, CLASSES, TIOUS)
    if not expected:
        with pytest.raises(AcnError, match="no ground-truth segment"):
            quiet_evaluate(ann, as_dict(dets), protocol="activitynet", tious=TIOUS)
        return
    res = quiet_evaluate(ann, as_dict(dets), protocol="activitynet", tious=TIOUS)
    assert list(res.classes) == [c for c in CLASSES if c in expected]
    np.testing.assert_allclose(res.ap, np.array([expected[c] for c in res.classes]),
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(list(res.map.values()),
                               np.mean([expected[c] for c in res.classes], axis=0), atol=1e-12)


@FAST
@given(problems())
def test_thumos14_matches_reference(problem):
    names, gt, dets, amb = problem
    ann = make_gt(gt, CLASSES, names, amb)
    present = [c for c in CLASSES if any(g[1] == c for g in gt)]
    if not present:
        with pytest.raises(AcnError, match="no ground-truth segment"):
            quiet_evaluate(ann, as_dict(dets), protocol="thumos14", tious=TIOUS)
        return
    expected = thumos14_ap(gt, dets, amb, present, TIOUS)
    if len(present) < len(CLASSES):
        with pytest.warns(UserWarning, match="no ground truth in subset"):
            res = evaluate(ann, as_dict(dets, names), protocol="thumos14", tious=TIOUS)
    else:
        res = quiet_evaluate(ann, as_dict(dets), protocol="thumos14", tious=TIOUS)
    assert list(res.classes) == present
    assert res.classes_without_ground_truth == tuple(c for c in CLASSES if c not in present)
    np.testing.assert_allclose(res.ap, np.array([expected[c] for c in present]),
                               rtol=0, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_both_protocols_match_reference_on_dense_random_data(seed):
    # Larger groups than the hypothesis problems: many GT per (video, class), overlapping GT.
    rng = np.random.default_rng(seed)
    names = ["v0", "v1"]
    gt = []
    for _ in range(int(rng.integers(8, 20))):
        s = float(rng.integers(0, 40))
        gt.append((str(rng.choice(names)), str(rng.choice(CLASSES)), s,
                   s + float(rng.integers(0, 8))))
    for c in CLASSES:  # every class has ground truth (THUMOS14 needs it)
        gt.append(("v0", c, 1.0, 5.0))
    dets = []
    for _ in range(int(rng.integers(20, 80))):
        if rng.random() < 0.6:  # a jittered copy of a ground truth
            v, lab, s, e = gt[int(rng.integers(len(gt)))]
            s, e = sorted((s + rng.integers(-2, 3) / 2, e + rng.integers(-2, 3) / 2))
        else:
            v, lab = str(rng.choice(names)), str(rng.choice(CLASSES))
            s = float(rng.integers(0, 40))
            e = s + float(rng.integers(0, 8))
        dets.append((v, lab, float(s), float(e), float(rng.choice([0.3, 0.6, rng.random()]))))
    amb = [("v1", 10.0, 14.0), ("v0", 30.0, 33.0)]
    ann = make_gt(gt, CLASSES, names, amb)
    tious = (0.1, 0.3, 0.5, 0.7)
    res = quiet_evaluate(ann, as_dict(dets), protocol="activitynet", tious=tious)
    exp = activitynet_ap(gt, dets, CLASSES, tious)
    np.testing.assert_allclose(res.ap, [exp[c] for c in res.classes], atol=1e-12)
    res = quiet_evaluate(ann, as_dict(dets), protocol="thumos14", tious=tious)
    exp = thumos14_ap(gt, dets, amb, CLASSES, tious)
    np.testing.assert_allclose(res.ap, [exp[c] for c in res.classes], atol=1e-12)


# -- hand-computed cases ---------------------------------------------------------------------------
def _ap(protocol, gt, dets, amb=(), tious=(0.5,), classes=("a",), videos=("v",)):
    ann = make_gt(gt, classes, videos, amb)
    return quiet_evaluate(ann, as_dict(dets, videos), protocol=protocol, tious=tious)


def test_tiou_values():
    iou = tiou_matrix(np.array([0.0, 0.0, 5.0, 3.0]), np.array([10.0, 6.0, 15.0, 3.0]),
                      np.array([0.0, 3.0]), np.array([10.0, 3.0]))
    np.testing.assert_allclose(iou, [[1.0, 0.0], [0.6, 0.0], [1 / 3, 0.0], [0.0, 0.0]])
    hull = tiou_matrix(np.array([0.0, 10.0]), np.array([10.0, 20.0]), np.array([5.0]),
                       np.array([12.0]), union="hull")
    np.testing.assert_allclose(hull, [[5 / 12], [2 / 15]])
    # touching segments do not intersect
    assert not intersects([0.0], [1.0], [1.0], [2.0])[0, 0]
    assert intersects([0.0], [1.5], [1.0], [2.0])[0, 0]


def test_duplicate_detection_is_a_false_positive_in_both_protocols():
    gt = [("v", "a", 0.0, 10.0), ("v", "a", 20.0, 30.0)]
    dets = [("v", "a", 0.0, 10.0, 0.9), ("v", "a", 0.0, 10.0, 0.8), ("v", "a", 20.0, 30.0, 0.7)]
    # TP FP TP: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1
    assert _ap("activitynet", gt, dets).map[0.5] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert _ap("thumos14", gt, dets).map[0.5] == pytest.approx((1 + 2 / 3) / 2)


def test_interpolated_versus_non_interpolated_ap():
    gt = [("v", "a", 0.0, 10.0), ("v", "a", 20.0, 30.0)]
    dets = [("v", "a", 40.0, 50.0, 0.9), ("v", "a", 0.0, 10.0, 0.8), ("v", "a", 20.0, 30.0, 0.7)]
    # FP TP TP: precision 0, 1/2, 2/3. Interpolated: both TPs get 2/3; non-interpolated: mean.
    assert _ap("activitynet", gt, dets).map[0.5] == pytest.approx(2 / 3)
    assert _ap("thumos14", gt, dets).map[0.5] == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_threshold_is_inclusive_for_activitynet_and_strict_for_thumos14():
    gt = [("v", "a", 0.0, 2.0)]
    dets = [("v", "a", 1.0, 2.0, 0.9)]  # tIoU exactly 0.5
    assert _ap("activitynet", gt, dets).map[0.5] == 1.0
    assert _ap("thumos14", gt, dets).map[0.5] == 0.0
    assert _ap("thumos14", gt, dets, tious=(0.4999,)).map[0.4999] == 1.0


def test_thumos14_matching_is_driven_by_the_ground_truth():
    gt = [("v", "a", 0.0, 10.0)]
    dets = [("v", "a", 0.0, 6.0, 0.9), ("v", "a", 0.0, 10.0, 0.8)]  # tIoU 0.6, then 1.0
    # ActivityNet: the higher score takes the GT -> TP FP -> AP 1.
    assert _ap("activitynet", gt, dets).map[0.5] == 1.0
    # THUMOS14: the GT takes the best-overlapping free detection -> FP TP -> AP 1/2.
    assert _ap("thumos14", gt, dets).map[0.5] == 0.5


def test_activitynet_takes_the_best_free_ground_truth():
    gt = [("v", "a", 0.0, 10.0), ("v", "a", 2.0, 10.0)]
    dets = [("v", "a", 2.0, 10.0, 0.9), ("v", "a", 0.0, 9.0, 0.8)]
    # det 1 matches GT 2 (tIoU 1 > 0.8); det 2 then takes GT 1 (0.9): two TPs.
    assert _ap("activitynet", gt, dets).map[0.5] == 1.0
    # at 0.85 det 2 still reaches GT 1 (0.9) -> AP 1; at 0.95 det 2 is an FP -> AP 1/2.
    res = _ap("activitynet", gt, dets, tious=(0.85, 0.95))
    assert res.map == {0.85: 1.0, 0.95: 0.5}


def test_thumos14_ambiguous_segments_remove_unmatched_detections_only():
    gt = [("v", "a", 0.0, 10.0)]
    amb = [("v", 20.0, 30.0)]
    dets = [("v", "a", 21.0, 25.0, 0.9),  # inside the ambiguous segment: removed
            ("v", "a", 30.0, 35.0, 0.85),  # touches it only: a false positive
            ("v", "a", 0.0, 10.0, 0.8)]  # true positive
    assert _ap("thumos14", gt, dets, amb).map[0.5] == 0.5  # FP TP
    assert _ap("thumos14", gt, dets).map[0.5] == pytest.approx(1 / 3)  # FP FP TP
    # ActivityNet ignores ambiguous segments
    assert _ap("activitynet", gt, dets, amb).map[0.5] == pytest.approx(1 / 3)
    # a matched detection that overlaps an ambiguous segment stays a true positive
    gt2 = [("v", "a", 18.0, 25.0)]
    dets2 = [("v", "a", 18.0, 25.0, 0.9), ("v", "a", 18.0, 25.0, 0.8)]
    assert _ap("thumos14", gt2, dets2, amb).map[0.5] == 1.0  # TP, duplicate removed


def test_ties_rank_by_video_id_then_input_order():
    gt = [("b", "a", 0.0, 10.0)]
    # equal scores: the FP on video "a" ranks before the TP on video "b", whatever the input order
    dets = [("b", "a", 0.0, 10.0, 0.5), ("a", "a", 50.0, 60.0, 0.5)]
    for protocol in ("activitynet", "thumos14"):
        for order in (dets, dets[::-1]):
            res = _ap(protocol, gt, order, videos=("b", "a"))
            assert res.map[0.5] == 0.5
    # within a video, equal scores keep the input order
    gt = [("v", "a", 0.0, 10.0)]
    tp_first = [("v", "a", 0.0, 10.0, 0.5), ("v", "a", 50.0, 60.0, 0.5)]
    assert _ap("activitynet", gt, tp_first).map[0.5] == 1.0
    assert _ap("activitynet", gt, tp_first[::-1]).map[0.5] == 0.5


def test_zero_length_segments_never_match():
    gt = [("v", "a", 5.0, 5.0), ("v", "a", 0.0, 2.0)]
    dets = [("v", "a", 5.0, 5.0, 0.9), ("v", "a", 0.0, 2.0, 0.8)]
    for protocol in ("activitynet", "thumos14"):
        res = _ap(protocol, gt, dets)
        # FP then TP: npos 2 includes the unmatchable zero-length GT
        assert res.map[0.5] == pytest.approx(0.25)


def test_class_without_detections_and_mean_over_classes():
    gt = [("v", "a", 0.0, 10.0), ("v", "b", 20.0, 30.0)]
    dets = [("v", "a", 0.0, 10.0, 0.9)]
    for protocol in ("activitynet", "thumos14"):
        res = _ap(protocol, gt, dets, classes=("a", "b"))
        assert res.per_class["a"][0.5] == 1.0 and res.per_class["b"][0.5] == 0.0
        assert res.map[0.5] == 0.5
    # ActivityNet averages only over classes with ground truth; detections of a class without
    # ground truth are simply not scored
    res = _ap("activitynet", gt, dets + [("v", "c", 0.0, 1.0, 0.95)], classes=("a", "b", "c"))
    assert res.classes == ("a", "b") and res.map[0.5] == 0.5
    assert res.classes_without_ground_truth == ("c",)
    # THUMOS14 officially requires ground truth for every class: here a warning, and the
    # class is left out of the mean (its AP is undefined), never counted as 0
    ann = make_gt(gt, ("a", "b", "c"), ("v",))
    with pytest.warns(UserWarning, match=r"1 of 3 classes have no ground truth in subset "
                                         r"'test' \(c\); the THUMOS14 mAP averages over the "
                                         r"other 2"):
        res = evaluate(ann, as_dict(dets + [("v", "c", 0.0, 1.0, 0.95)], ("v",)),
                       protocol="thumos14", tious=(0.5,))
    assert res.classes == ("a", "b") and res.map[0.5] == 0.5
    assert res.to_json()["classes_without_ground_truth"] == ["c"]
    assert "1 classes without ground truth left out of the mean" in res.format_table()


def test_detections_on_videos_without_ground_truth_are_false_positives():
    gt = [("v", "a", 0.0, 10.0)]
    dets = [("w", "a", 0.0, 10.0, 0.9), ("v", "a", 0.0, 10.0, 0.8)]
    for protocol in ("activitynet", "thumos14"):
        assert _ap(protocol, gt, dets, videos=("v", "w")).map[0.5] == 0.5


def test_match_kernels_directly():
    iou = np.array([[0.6, 0.7], [0.9, 0.0], [0.55, 0.0]])
    tp = match_greedy(iou, np.array([0.5, 0.65, 0.8]))
    # 0.5: det0 -> gt1, det1 -> gt0, det2 FP. 0.65: det0 -> gt1, det1 -> gt0. 0.8: det1 only.
    assert tp.tolist() == [[True, True, False], [True, True, False], [False, True, False]]
    ov = np.array([[0.6, 0.9, 0.9], [0.0, 0.95, 0.4]])  # gt x det
    m = match_gt_driven(ov, np.array([0.5, 0.92]))
    # 0.5: gt0 takes det1 (first of the 0.9s); gt1 then best free is det2 (0.4) -> no.
    # 0.92: gt0 best free 0.9 -> no; gt1 takes det1 (0.95).
    assert m.tolist() == [[False, True, False], [False, True, False]]
    np.testing.assert_allclose(interpolated_ap(np.array([[0, 1, 1]], bool), 2), [2 / 3])


# -- invariants ------------------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["v1", "v2", "v3"]), st.sampled_from(CLASSES),
                          _segments.filter(lambda s: s[1] > s[0])), min_size=1, max_size=12),
       st.randoms(use_true_random=False))
def test_perfect_detections_score_one(gt_rows, rnd):
    gt = [(v, lab, s, e) for v, lab, (s, e) in gt_rows]
    dets = [(v, lab, s, e, rnd.random()) for v, lab, s, e in gt]
    rnd.shuffle(dets)
    ann = make_gt(gt, CLASSES, ["v1", "v2", "v3"], [("v1", 0.0, 8.0)])
    res = quiet_evaluate(ann, as_dict(dets), protocol="activitynet")
    assert all(m == 1.0 for m in res.map.values()) and res.average == 1.0
    res = quiet_evaluate(ann, as_dict(dets), protocol="thumos14")
    assert all(m == pytest.approx(1.0, abs=1e-12) for m in res.map.values())


@FEWER
@given(problems(), st.randoms(use_true_random=False))
def test_invariant_to_the_order_of_the_input(problem, rnd):
    names, gt, dets, amb = problem
    ann = make_gt(gt, CLASSES, names, amb)
    # distinct scores: any permutation of the detections gives the same result
    distinct = [(v, lab, s, e, (i + 1) / (len(dets) + 1)) for i, (v, lab, s, e, _) in
                enumerate(dets)]
    shuffled = distinct[:]
    rnd.shuffle(shuffled)
    # tied scores: reordering the videos (not the detections within a video) changes nothing
    by_video = as_dict(dets)
    keys = list(by_video)
    rnd.shuffle(keys)
    for protocol in ("activitynet", "thumos14"):
        try:
            a = quiet_evaluate(ann, as_dict(distinct), protocol=protocol)
        except AcnError:
            continue  # no ground truth at all, covered elsewhere
        b = quiet_evaluate(ann, as_dict(shuffled), protocol=protocol)
        np.testing.assert_array_equal(a.ap, b.ap)
        c = quiet_evaluate(ann, by_video, protocol=protocol)
        d = quiet_evaluate(ann, {k: by_video[k] for k in keys}, protocol=protocol)
        np.testing.assert_array_equal(c.ap, d.ap)


@FEWER
@given(problems(), _segments, st.sampled_from(CLASSES), st.sampled_from([0, 1, 2]))
def test_a_lowest_scored_detection_never_changes_earlier_precision(problem, seg, label, vi):
    names, gt, dets, amb = problem
    ann = make_gt(gt, CLASSES, names, amb)
    low = min([d[4] for d in dets], default=1.0) - 0.5
    extra = (names[vi % len(names)], label, seg[0], seg[1], low)
    try:
        before = quiet_evaluate(ann, as_dict(dets), protocol="activitynet")
    except AcnError:
        return
    after = quiet_evaluate(ann, as_dict(dets + [extra]), protocol="activitynet")
    # ActivityNet matches in rank order: earlier matches are unchanged, so AP can only grow
    # (new TP) or stay (new FP: its precision is below every earlier running precision).
    assert np.all(after.ap >= before.ap - 1e-12)
    changed = np.any(after.ap > before.ap + 1e-12, axis=1)
    assert set(np.array(after.classes)[changed]) <= {label}
    before = quiet_evaluate(ann, as_dict(dets), protocol="thumos14")
    after = quiet_evaluate(ann, as_dict(dets + [extra]), protocol="thumos14")
    # THUMOS14 lets a ground truth pick its best-overlapping detection, so a low-scored
    # detection may take a ground truth away from a higher one; only other classes are
    # certainly unchanged, and a detection overlapping no ground truth changes nothing.
    others = np.array([c != label for c in after.classes])
    np.testing.assert_array_equal(after.ap[others], before.ap[others])
    same = [(s, e) for v, lab, s, e in gt if v == extra[0] and lab == label]
    if not any(min(e, seg[1]) - max(s, seg[0]) > 0 for s, e in same):
        np.testing.assert_array_equal(after.ap, before.ap)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.integers(1, 5), st.integers(0, 2**32 - 1))
def test_activitynet_matches_of_a_ranked_prefix_never_change(n_det, n_gt, seed):
    # The precise form of "a detection scored below all others never changes earlier
    # precision": the matches of the first k detections do not depend on later ones.
    rng = np.random.default_rng(seed)
    iou = rng.choice([0.0, 0.3, 0.5, 0.55, 0.7, 1.0], size=(n_det, n_gt))
    tious = np.array([0.3, 0.5, 0.7])
    full = match_greedy(iou, tious)
    for k in range(n_det):
        np.testing.assert_array_equal(match_greedy(iou[:k], tious), full[:, :k])


def test_thumos14_a_low_scored_detection_can_take_a_ground_truth_away():
    gt = [("v", "a", 0.0, 10.0)]
    one = [("v", "a", 0.0, 6.0, 0.9)]
    assert _ap("thumos14", gt, one).map[0.5] == 1.0
    assert _ap("thumos14", gt, one + [("v", "a", 0.0, 10.0, 0.1)]).map[0.5] == 0.5


# -- result object ---------------------------------------------------------------------------------
def test_result_json_and_table():
    gt = [("v", "a", 0.0, 10.0), ("v", "b", 20.0, 30.0)]
    dets = [("v", "a", 0.0, 10.0, 0.9), ("v", "b", 20.0, 26.0, 0.8)]  # b: tIoU 0.6
    res = _ap("thumos14", gt, dets, classes=("a", "b"), tious=None)
    assert res.tious == default_tious("thumos14") == (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
    j = res.to_json()
    assert j["protocol"] == "thumos14" and j["subset"] == "test"
    assert list(j["map"]) == ["0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7"]
    assert j["map"]["0.5"] == 1.0 and j["map"]["0.6"] == 0.5 and j["map"]["0.7"] == 0.5
    assert j["per_class"]["b"]["0.6"] == 0.0 and j["per_class"]["a"]["0.7"] == 1.0
    assert j["average"] == pytest.approx((5 * 1.0 + 2 * 0.5) / 7)
    assert j["num_ground_truth"] == {"a": 1, "b": 1} and j["num_detections"] == 2
    table = res.format_table(per_class=True)
    assert "THUMOS14 protocol" in table and "100.00" in table and "50.00" in table
    assert "85.71" in table  # the average, in percent
    assert default_tious("activitynet") == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9,
                                            0.95)


def test_only_the_evaluated_subset_counts():
    ann = make_gt([("v", "a", 0.0, 10.0)], ["a"], ["v"], other=["t1"])
    ann.videos["t1"].segments.append(Segment(0.0, 5.0, "a"))  # GT of another subset: ignored
    res = quiet_evaluate(ann, {"v": [(0.0, 10.0, "a", 0.9)]})
    assert res.num_ground_truth == (1,) and res.map[0.5] == 1.0
    res = quiet_evaluate(ann, {"t1": [(0.0, 5.0, "a", 0.9)]}, subset="train")
    assert res.num_videos == 1 and res.map[0.5] == 1.0


# -- errors ----------------------------------------------------------------------------------------
def test_unknown_videos_are_an_error_or_dropped():
    ann = make_gt([("v", "a", 0.0, 10.0)], ["a"], ["v"], other=["t1"])
    dets = {"v": [(0.0, 10.0, "a", 0.9)], "t1": [(0.0, 1.0, "a", 0.99)],
            "zz": [(0.0, 1.0, "a", 0.98), (0.0, 2.0, "a", 0.97)]}
    with pytest.raises(AcnError, match=r"3 detections on 2 videos that are not in subset "
                                        r"'test' \(1 of them in other subsets.*'t1', 'zz'"):
        evaluate(ann, dets, where="pred.json")
    with pytest.warns(UserWarning, match="dropped"):
        res = evaluate(ann, dets, ignore_unknown_videos=True)
    assert res.map[0.5] == 1.0 and res.num_dropped == 3 and res.num_detections == 1
    assert res.to_json()["num_dropped_detections"] == 3


def test_activitynet_id_prefix_hint():
    ann = make_gt([("v_abc", "a", 0.0, 10.0)], ["a"], ["v_abc"])
    with pytest.raises(AcnError, match="'v_' prefix is added"):
        evaluate(ann, {"abc": [(0.0, 1.0, "a", 0.5)]})


def test_unknown_labels_are_an_error():
    ann = make_gt([("v", "a", 0.0, 10.0)], ["a"], ["v"])
    with pytest.raises(AcnError, match=r"pred.json: 2 detections have labels that are not "
                                        r"classes of 'toy': \['Jump', 'Run'\]"):
        evaluate(ann, {"v": [(0, 1, "Run", 0.5), (0, 1, "Jump", 0.4), (0, 1, "a", 0.3)]},
                 where="pred.json")


def test_missing_videos_warn():
    ann = make_gt([("v", "a", 0.0, 10.0)], ["a"], ["v", "w"])
    with pytest.warns(UserWarning, match="1 of the 2 videos of subset 'test' have no entry"):
        res = evaluate(ann, {"v": [(0.0, 10.0, "a", 0.9)]})
    assert res.videos_without_detections == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an explicit empty list says "nothing detected"
        evaluate(ann, {"v": [(0.0, 10.0, "a", 0.9)], "w": []})


@pytest.mark.parametrize("kwargs, msg", [
    ({"protocol": "coco"}, "unknown evaluation protocol"),
    ({"tious": []}, "no tIoU threshold"),
    ({"tious": [0.5, 0.5]}, "duplicate tIoU"),
    ({"tious": [0.0]}, r"must lie in \(0, 1\]"),
    ({"tious": [1.5]}, r"must lie in \(0, 1\]"),
    ({"tious": ["x"]}, "must be numbers"),
    ({"subset": "nope"}, "no video in subset 'nope'"),
])
def test_bad_arguments(kwargs, msg):
    ann = make_gt([("v", "a", 0.0, 10.0)], ["a"], ["v"])
    with pytest.raises(AcnError, match=msg):
        evaluate(ann, {"v": []}, **kwargs)


def test_detections_object_and_empty_detections():
    ann = make_gt([("v", "a", 0.0, 10.0)], ["a"], ["v"])
    dets = Detections.from_arrays(["v"], ["a"], [0.0], [10.0], [0.5])
    assert evaluate(ann, dets).map[0.5] == 1.0
    res = quiet_evaluate(ann, Detections.empty())
    assert res.map[0.5] == 0.0 and res.num_detections == 0


def test_both_protocols_match_reference_on_real_thumos14_ground_truth():
    # The real THUMOS14 test ground truth (dense videos, ambiguous segments, overlapping
    # CliffDiving/Diving) on a sample of videos, with jittered and random detections.
    from importlib import resources

    from acn.data.wtalc import load_wtalc_annotations

    folder = resources.files("acn") / "resources" / "thumos14" / "Thumos14reduced-Annotations"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = load_wtalc_annotations(str(folder), allow_pickle=True)  # our own package data
    videos = full.subset("test")[::10]
    classes = sorted({s.label for v in videos for s in v.segments})
    ann = Annotations(classes=classes, videos={v.id: v for v in videos}, test_subset="test",
                      name="thumos14-sample")
    gt = [(v.id, s.label, s.start, s.end) for v in videos for s in v.segments]
    amb = [(v.id, a, b) for v in videos for a, b in v.ambiguous]
    assert len(gt) > 200 and amb
    rng = np.random.default_rng(0)
    dets = []
    for _ in range(1500):
        v, lab, s, e = gt[int(rng.integers(len(gt)))]
        if rng.random() < 0.5:
            j = (e - s) * rng.normal(0, 0.3, 2)
            s, e = sorted((s + j[0], e + j[1]))
        else:
            lab, s = classes[int(rng.integers(len(classes)))], float(rng.uniform(0, 200))
            e = s + float(rng.exponential(5.0))
        dets.append((v, lab, float(s), float(e), float(rng.random())))
    res = quiet_evaluate(ann, as_dict(dets), protocol="activitynet")
    exp = activitynet_ap(gt, dets, classes, res.tious)
    np.testing.assert_allclose(res.ap, [exp[c] for c in res.classes], atol=1e-12)
    res = quiet_evaluate(ann, as_dict(dets), protocol="thumos14")
    exp = thumos14_ap(gt, dets, amb, classes, res.tious)
    np.testing.assert_allclose(res.ap, [exp[c] for c in res.classes], atol=1e-12)
    assert 0.01 < res.map[0.5] < 0.99  # a non-trivial case
