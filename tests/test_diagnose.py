"""The DETAD error diagnosis (acn.evaluate.diagnose): hand-made cases for every false-positive
type and the priority between them, and a brute-force count (plain Python loops over the
definitions in the module docstring) that the vectorised functions must agree with on random
inputs."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acn.data.annotations import Annotations, Segment, Video
from acn.errors import AcnError
from acn.evaluate import evaluate
from acn.evaluate.diagnose import (
    ERROR_TYPES,
    INSTANCE_BUCKETS,
    KINDS,
    LENGTH_BUCKETS,
    bucket_index,
    diagnose,
    instances_per_video,
    normalized_ap,
)

CLASSES = ["a", "b", "c"]


def annotations(rows, videos=None) -> Annotations:
    """Ground truth from ``(video, label, start_s, end_s)`` rows (order kept per video)."""
    names = list(videos or dict.fromkeys(r[0] for r in rows)) or ["v0"]
    vids = {v: Video(v, "test", 200.0, tuple(sorted({r[1] for r in rows if r[0] == v})),
                     [Segment(s, e, lab) for vv, lab, s, e in rows if vv == v]) for v in names}
    return Annotations(list(CLASSES), vids, "train", "test", "toy")


def detections(rows, videos=()) -> dict:
    """``{video: [(start, end, label, score)]}`` from ``(video, label, start, end, score)``."""
    out: dict = {v: [] for v in videos}
    for v, lab, s, e, sc in rows:
        out.setdefault(v, []).append((s, e, lab, sc))
    return out


def kinds_of(gt_rows, det_rows, **kw) -> list[str]:
    d = diagnose(annotations(gt_rows), detections(det_rows), **kw)
    return [KINDS[k] for k in d.kind]


# -- hand-made cases ------------------------------------------------------------------------


GT = [("v", "a", 10.0, 20.0), ("v", "b", 40.0, 50.0)]


@pytest.mark.parametrize("det, expected", [
    (("v", "a", 10.0, 20.0, 0.9), "true_positive"),
    (("v", "a", 11.0, 21.0, 0.9), "true_positive"),       # tIoU 9/11 >= 0.5
    (("v", "b", 10.0, 20.0, 0.9), "wrong_label"),         # a's instance, label b
    (("v", "a", 10.0, 30.0, 0.9), "true_positive"),       # tIoU exactly 0.5: inclusive
    (("v", "a", 10.0, 40.0, 0.9), "localization"),        # tIoU 1/3
    (("v", "a", 15.0, 45.0, 0.9), "localization"),        # 5/35 with a and with b: own first
    (("v", "a", 19.0, 60.0, 0.9), "confusion"),           # 1/50 with a, 10/41 with b
    (("v", "b", 10.0, 40.0, 0.9), "confusion"),           # 1/3 with a's instance
    (("v", "a", 18.0, 30.0, 0.9), "localization"),        # 2/20 = 0.1: the band is inclusive
    (("v", "a", 18.5, 30.0, 0.9), "background"),          # 1.5/21 < 0.1
    (("v", "a", 19.0, 39.0, 0.9), "background"),          # 1/29 < 0.1
    (("v", "c", 60.0, 70.0, 0.9), "background"),
])
def test_each_type_by_hand(det, expected):
    assert kinds_of(GT, [det]) == [expected]


def test_double_detection_is_the_lower_scored_duplicate():
    dets = [("v", "a", 10.0, 21.0, 0.5), ("v", "a", 10.0, 20.0, 0.9), ("v", "a", 12.0, 22.0, 0.7)]
    assert kinds_of(GT, dets) == ["double_detection", "true_positive", "double_detection"]


def test_a_free_instance_makes_a_true_positive_not_a_double():
    gt = [("v", "a", 10.0, 20.0), ("v", "a", 12.0, 22.0)]  # two overlapping instances
    dets = [("v", "a", 10.0, 20.0, 0.9), ("v", "a", 11.0, 21.0, 0.8), ("v", "a", 11.0, 21.0, 0.7)]
    assert kinds_of(gt, dets) == ["true_positive", "true_positive", "double_detection"]


def test_priority_between_overlapping_cases():
    # A detection of class a overlapping a's instance at >= t (already taken) AND b's instance
    # at >= t with a higher tIoU: the own class wins (double detection), where DETAD's
    # highest-tIoU rule would say wrong label.
    gt = [("v", "a", 0.0, 10.0), ("v", "b", 1.0, 10.0)]
    dets = [("v", "a", 0.0, 10.0, 0.9), ("v", "a", 1.0, 10.0, 0.5)]
    assert kinds_of(gt, dets) == ["true_positive", "double_detection"]
    # the >= t band before the own class: a's instance at 0.2, b's at 0.6 -> wrong label
    gt = [("v", "a", 0.0, 10.0), ("v", "b", 8.0, 14.0)]
    assert kinds_of(gt, [("v", "a", 8.0, 18.0, 0.9)]) == ["wrong_label"]
    # both in [0.1, t), the other class higher (2/16 vs 4/22): own class first -> localization
    gt = [("v", "a", 0.0, 10.0), ("v", "b", 12.0, 30.0)]
    assert kinds_of(gt, [("v", "a", 8.0, 16.0, 0.9)]) == ["localization"]


def test_video_without_ground_truth_is_background():
    d = diagnose(annotations(GT, videos=["v", "w"]),
                 detections([("w", "a", 10.0, 20.0, 0.9)], videos=["v"]))
    assert [KINDS[k] for k in d.kind] == ["background"]
    assert d.video_ids == ("v", "w") and d.video.tolist() == [1]


def test_top_g_counts_and_all_counts():
    # class a has 2 instances: the top-2 predictions of a are a TP and a double detection
    gt = [("v", "a", 10.0, 20.0), ("v", "a", 60.0, 70.0), ("v", "b", 40.0, 50.0)]
    dets = [("v", "a", 10.0, 20.0, 0.9), ("v", "a", 10.0, 20.0, 0.8),
            ("v", "a", 90.0, 99.0, 0.7), ("v", "a", 60.0, 70.0, 0.6),
            ("v", "b", 40.0, 50.0, 0.5)]
    d = diagnose(annotations(gt), detections(dets))
    assert d.classes == ("a", "b")
    top = dict(zip(KINDS, d.top[0]))
    assert top == {"true_positive": 1, "double_detection": 1, "wrong_label": 0,
                   "localization": 0, "confusion": 0, "background": 0}
    al = dict(zip(KINDS, d.all[0]))
    assert al["true_positive"] == 2 and al["double_detection"] == 1 and al["background"] == 1
    assert d.profile[1].tolist() == d.top.sum(axis=0).tolist()
    assert d.profile[10].sum() == len(dets)  # 10G covers every prediction here
    # removing the double detection and the background lifts a's AP to 1
    assert d.ap[0] == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 4)
    gain = d.map_gain
    assert gain["double_detection"] == pytest.approx((0.5 + 0.5 * 2 / 3 - d.ap[0]) / 2)
    assert gain["background"] == pytest.approx((0.5 + 0.5 * 2 / 3 - d.ap[0]) / 2)
    assert gain["wrong_label"] == 0.0
    assert sum(d.totals("all")[e] for e in ERROR_TYPES) == 2


def test_normalized_ap_by_hand():
    tp = np.array([1, 0, 1, 0], dtype=bool)
    assert normalized_ap(tp, 2) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert normalized_ap(tp, 2, n_norm=2.0) == pytest.approx(normalized_ap(tp, 2))
    # N = 4: precision at recall 1/2 is 2/(2+0) = 1; at recall 1: 4/(4+1) = 0.8
    assert normalized_ap(tp, 2, n_norm=4.0) == pytest.approx(0.5 * 1.0 + 0.5 * 0.8)
    assert normalized_ap(np.zeros(0, dtype=bool), 3, n_norm=1.0) == 0.0


def test_buckets():
    assert bucket_index([0.0, 3.0, 3.5, 18.0, 40.0], LENGTH_BUCKETS).tolist() == [-1, 0, 1, 2, 4]
    assert bucket_index([1, 2, 4, 5, 16, 17], INSTANCE_BUCKETS).tolist() == [0, 1, 1, 2, 3, 4]
    assert instances_per_video(np.array([0, 0, 0, 1]), np.array([2, 2, 1, 2])).tolist() == \
        [2, 2, 1, 1]


def test_sensitivity_by_hand():
    # a short instance (2 s) found, a long one (40 s) missed; an FP stays in both buckets
    gt = [("v", "a", 0.0, 2.0), ("v", "a", 100.0, 140.0)]
    dets = [("v", "a", 0.0, 2.0, 0.9), ("v", "a", 50.0, 60.0, 0.8)]
    d = diagnose(annotations(gt), detections(dets))
    length = d.sensitivity[0]
    assert length.num_ground_truth == (1, 0, 0, 0, 1)
    assert length.map_n[0] == pytest.approx(1.0) and length.map_n[4] == 0.0
    assert math.isnan(length.map_n[1])
    inst = d.sensitivity[1]
    assert inst.num_ground_truth == (0, 2, 0, 0, 0)
    assert inst.bucket_labels()[:2] == ["XS 1", "S 2-4"] and inst.bucket_labels()[4] == "XL >16"


def test_table_json_and_errors():
    d = diagnose(annotations(GT), detections([("v", "a", 10.0, 20.0, 0.9),
                                              ("v", "a", 60.0, 70.0, 0.1)]))
    text = d.format_table()
    for word in ("DETAD", "double detection", "background", "mAP gain", "Sensitivity",
                 "action length", "instances of its class"):
        assert word in text
    js = d.to_json()
    assert js["all"]["background"] == 1 and js["tiou"] == 0.5
    assert set(js["sensitivity"]) == {"length", "instances"}
    with pytest.raises(AcnError, match="min_tiou"):
        diagnose(annotations(GT), {}, tiou=0.05)


# -- against a brute-force count --------------------------------------------------------------


def iou(s1, e1, s2, e2) -> float:
    inter = max(0.0, min(e1, e2) - max(s1, s2))
    return inter / ((e1 - s1) + (e2 - s2) - inter) if inter > 0 else 0.0


def brute_kinds(gt, dets, videos, t, min_t):
    """Kind and rank per detection, straight from the definitions."""
    vcode = {v: i for i, v in enumerate(sorted(videos))}
    kind, rank, matched = [None] * len(dets), [None] * len(dets), [-1] * len(dets)
    for c in CLASSES:
        idx = [i for i, d in enumerate(dets) if d[1] == c]
        idx.sort(key=lambda i: (-dets[i][4], vcode[dets[i][0]], i))
        locked = set()
        for r, i in enumerate(idx):
            rank[i] = r
            v, _, s, e, _ = dets[i]
            best, best_iou = None, -1.0
            for j, (gv, gl, gs, ge) in enumerate(gt):
                if gv == v and gl == c and j not in locked:
                    x = iou(s, e, gs, ge)
                    if x >= t and x > best_iou:
                        best, best_iou = j, x
            if best is not None:
                locked.add(best)
                kind[i], matched[i] = "true_positive", best
                continue
            same = max([iou(s, e, gs, ge) for gv, gl, gs, ge in gt if gv == v and gl == c],
                       default=0.0)
            other = max([iou(s, e, gs, ge) for gv, gl, gs, ge in gt if gv == v and gl != c],
                        default=0.0)
            kind[i] = ("double_detection" if same >= t else "wrong_label" if other >= t else
                       "localization" if same >= min_t else "confusion" if other >= min_t else
                       "background")
    return kind, rank, matched


def brute_ap(flags, npos, n_norm=None) -> float:
    """Interpolated (normalized) AP of a ranked list of TP flags, loop by loop."""
    n_norm = npos if n_norm is None else n_norm
    prec, rec, ntp, nfp = [], [], 0, 0
    for f in flags:
        ntp += f
        nfp += 1 - f
        r = ntp / npos
        prec.append(r * n_norm / (r * n_norm + nfp))
        rec.append(r)
    ap, prev = 0.0, 0.0
    for i in range(len(prec)):
        ap += (rec[i] - prev) * max(prec[i:])
        prev = rec[i]
    return ap


_time = st.integers(0, 24).map(lambda x: x / 2)  # coarse: ties and exact thresholds happen
_seg = st.tuples(_time, _time).map(sorted).filter(lambda se: se[1] > se[0])


@st.composite
def problems(draw):
    videos = draw(st.lists(st.sampled_from(["v2", "v1", "x", "a0"]), min_size=1, max_size=3,
                           unique=True))
    vid, lab = st.sampled_from(videos), st.sampled_from(CLASSES)
    gt = draw(st.lists(st.tuples(vid, lab, _seg).map(lambda r: (r[0], r[1], *r[2])),
                       min_size=1, max_size=8))
    dets = draw(st.lists(st.tuples(vid, lab, _seg, st.sampled_from([0.1, 0.5, 0.9]) |
                                   st.floats(0, 1, allow_nan=False))
                         .map(lambda r: (r[0], r[1], *r[2], r[3])), max_size=20))
    t = draw(st.sampled_from([0.3, 0.5, 0.7]))
    return videos, gt, dets, t


def diagnosed(problem):
    """``(diagnosis, gt_rows, det_rows, brute-force (kind, rank, matched))`` of a problem;
    the rows in the order flatten() reads them (by video in dict order)."""
    videos, gt, dets, t = problem
    ann = annotations(gt, videos)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # videos without any detection
        d = diagnose(ann, detections(dets), tiou=t, top_factor=1.0)
    gt_rows = [(v.id, s.label, s.start, s.end) for v in ann.subset("test") for s in v.segments]
    det_rows = [(v, lab, s, e, sc) for v, lst in detections(dets).items()
                for (s, e, lab, sc) in lst]
    return d, gt_rows, det_rows, brute_kinds(gt_rows, det_rows, videos, t, 0.1)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_agrees_with_brute_force(problem):
    d, gt_rows, det_rows, (kind, rank, _) = diagnosed(problem)
    assert [KINDS[k] for k in d.kind] == kind
    assert d.rank.tolist() == rank

    # counts among the top-G predictions and among all, per class
    for ci, c in enumerate(d.classes):
        g = sum(1 for r in gt_rows if r[1] == c)
        rows = [i for i, r in enumerate(det_rows) if r[1] == c]
        top = [kind[i] for i in rows if rank[i] < g]
        assert dict(zip(KINDS, d.top[ci].tolist())) == {k: top.count(k) for k in KINDS}
        assert dict(zip(KINDS, d.all[ci].tolist())) == \
            {k: [kind[i] for i in rows].count(k) for k in KINDS}
        # AP and the AP after removing each error type
        ranked = sorted(rows, key=lambda i: rank[i])
        flags = [kind[i] == "true_positive" for i in ranked]
        assert d.ap[ci] == pytest.approx(brute_ap(flags, g))
        for ei, e in enumerate(ERROR_TYPES):
            kept = [kind[i] == "true_positive" for i in ranked if kind[i] != e]
            assert d.gain[ci, ei] == pytest.approx(brute_ap(kept, g) - brute_ap(flags, g))
    # the totals add up to every false positive (of the classes that have an AP)
    scored = [i for i, r in enumerate(det_rows) if r[1] in d.classes]
    n_fp = sum(kind[i] != "true_positive" for i in scored)
    assert sum(d.totals("all")[e] for e in ERROR_TYPES) == n_fp
    assert sum(d.totals("all").values()) + d.num_unscored == len(det_rows)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_sensitivity_agrees_with_brute_force(problem):
    d, gt_rows, det_rows, (kind, rank, matched) = diagnosed(problem)
    n_norm = len(gt_rows) / len({r[1] for r in gt_rows})
    for sens, buckets, value in (
            (d.sensitivity[0], LENGTH_BUCKETS, lambda j: gt_rows[j][3] - gt_rows[j][2]),
            (d.sensitivity[1], INSTANCE_BUCKETS,
             lambda j: sum(1 for r in gt_rows if r[:2] == gt_rows[j][:2]))):
        for b, (_, lo, hi) in enumerate(buckets):
            inside = [j for j in range(len(gt_rows)) if lo < value(j) <= hi]
            assert sens.num_ground_truth[b] == len(inside)
            aps = []
            for c in CLASSES:
                g = sum(1 for j in inside if gt_rows[j][1] == c)
                if not g:
                    continue
                ranked = sorted((i for i, r in enumerate(det_rows) if r[1] == c),
                                key=lambda i: rank[i])
                flags = [kind[i] == "true_positive" for i in ranked
                         if kind[i] != "true_positive" or matched[i] in inside]
                aps.append(brute_ap(flags, g, n_norm))
            if aps:
                assert sens.map_n[b] == pytest.approx(float(np.mean(aps)))
            else:
                assert math.isnan(sens.map_n[b])


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_ap_is_the_evaluators_ap(problem):
    videos, gt, dets, t = problem
    ann = annotations(gt, videos)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = diagnose(ann, detections(dets), tiou=t)
        r = evaluate(ann, detections(dets), protocol="activitynet", tious=[t])
    assert d.classes == r.classes
    assert d.ap == pytest.approx(r.ap[:, 0])


# -- acn evaluate --diagnose ----------------------------------------------------------------


def test_evaluate_cli_prints_and_writes_the_diagnosis(tmp_path, capsys):
    import argparse
    import json

    from acn.cli import evaluate as cli_evaluate
    from acn.evaluate import save_results

    db = {"v1": {"subset": "validation", "duration": 100.0,
                 "annotations": [{"segment": [0.0, 10.0], "label": "a"},
                                 {"segment": [20.0, 30.0], "label": "b"}]},
          "t1": {"subset": "training", "duration": 50.0,
                 "annotations": [{"segment": [1.0, 2.0], "label": "a"}]}}
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"version": "1.3", "database": db}))
    pred = tmp_path / "pred.json"
    save_results(pred, {"v1": [(0.0, 10.0, "a", 0.9), (0.0, 9.0, "a", 0.8),
                               (20.0, 30.0, "a", 0.7), (60.0, 70.0, "b", 0.6)]})
    out = tmp_path / "eval.json"
    parser = argparse.ArgumentParser()
    cli_evaluate.add_arguments(parser)
    args = parser.parse_args(["--gt", str(gt), "--pred", str(pred), "--diagnose",
                              "--json", str(out)])
    assert cli_evaluate.run(args) == 0
    text = capsys.readouterr().out
    assert "ActivityNet protocol" in text and "Error diagnosis (DETAD" in text
    assert "double detection" in text and "Sensitivity" in text
    js = json.loads(out.read_text())["diagnosis"]
    assert js["all"] == {"true_positive": 1, "double_detection": 1, "wrong_label": 1,
                         "localization": 0, "confusion": 0, "background": 1}
