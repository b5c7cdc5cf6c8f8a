"""What the HTML report says about a run: its config against the defaults, the data, and the
figures of ``RUN/train_log.json`` (losses per epoch, classification mAP, seconds per stage)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from acn.data.features import Dataset
from acn.errors import AcnError
from acn.fileio import read_json

STREAMS = ("rgb", "flow")
#: The value of a key that one config does not have.
ABSENT = object()


def paired_items(a: Any, b: Any, prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """``{"section.key": (a_value, b_value)}`` over two nested configs: a key is walked into
    where it is a non-empty dict on both sides, else it is one leaf (so ``null`` against
    ``{rgb: {}, flow: {}}`` is one row, not three). A side without the key gives
    :data:`ABSENT`."""
    if isinstance(a, dict) and isinstance(b, dict) and (a or b):
        out: dict[str, tuple[Any, Any]] = {}
        for k in list(a) + [k for k in b if k not in a]:
            out.update(paired_items(a.get(k, ABSENT), b.get(k, ABSENT), f"{prefix}{k}."))
        return out
    return {prefix[:-1]: (a, b)}


@dataclass(frozen=True)
class ConfigRow:
    """One config key: the run's value, the default's, and whether they differ."""

    key: str
    value: str
    default: str
    differs: bool


def config_rows(cfg: dict, default: dict) -> list[ConfigRow]:
    """Every key of the run's config (and of the defaults), sorted, with the values as
    compact YAML. A key missing on one side shows as ``(absent)`` and differs."""
    def show(v: Any) -> str:
        if v is ABSENT:
            return "(absent)"
        text = yaml.safe_dump(v, default_flow_style=True, width=10**6).strip()
        return text[:-4].strip() if text.endswith("\n...") or text.endswith(" ...") else text

    pairs = paired_items(cfg, default)
    return [ConfigRow(key, show(a), show(b), a != b) for key, (a, b) in sorted(pairs.items())]


def read_run(run: Path | None) -> tuple[dict | None, dict]:
    """``(config, train_log)`` of a run folder (``None`` / ``{}`` where a file is absent)."""
    if run is None:
        return None, {}
    run = Path(run)
    cfg = None
    if (run / "config.yaml").is_file():
        try:
            cfg = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise AcnError(f"{run / 'config.yaml'}: not valid YAML ({e})") from None
    log = read_json(run / "train_log.json", what="training log") \
        if (run / "train_log.json").is_file() else {}
    return cfg, log if isinstance(log, dict) else {}


def data_summary(ds: Dataset, test_subset: str) -> list[tuple[str, str]]:
    """``(what, value)`` rows describing the dataset: classes, subsets, lengths, snippets."""
    ann = ds.annotations
    rows = [("dataset", f"{ann.name}" + (f" ({ds.root})" if getattr(ds, "root", None) else "")),
            ("classes", f"{len(ann.classes)}: {', '.join(ann.classes[:12])}"
                        + (", ..." if len(ann.classes) > 12 else ""))]
    for name in ann.subsets:
        videos = ann.subset(name)
        segs = [s for v in videos for s in v.segments]
        hours = sum(v.duration for v in videos) / 3600
        role = (" (training)" if name == ann.train_subset else
                " (evaluated)" if name == test_subset else "")
        lens = [s.end - s.start for s in segs]
        rows.append((f"subset {name}{role}",
                     f"{len(videos)} videos, {hours:.1f} h, {len(segs)} ground-truth segments"
                     + (f" (median length {statistics.median(lens):.1f} s, "
                        f"{len(segs) / max(len(videos), 1):.1f} per video)" if segs else "")))
    first = next(iter(ann), None)
    if first is not None:
        rows.append(("snippets", f"{first.frames_per_snippet} frames at {first.fps:g} fps = "
                                 f"{first.frames_per_snippet / first.fps:.3f} s per snippet"))
    try:
        rows.append(("feature width", f"{ds.feature_dim()} per stream (RGB, Flow)"))
    except Exception:  # noqa: BLE001 - a summary line, never a reason to fail the report
        pass
    return rows


@dataclass(frozen=True)
class TrainingFigures:
    """The numbers of a training log that the report plots.

    Attributes:
        base_loss: ``{stream: [loss per epoch]}`` of the final base model.
        regression_loss: ``{stream: [loss per epoch]}`` of the regression nets.
        tried_loss: ``{stream: [[loss per epoch] per recipe tried on the carved split]}``.
        classification: ``{stream: {"training": mAP, "carved validation": mAP, "test": mAP}}``
            (video-level classification mAP, fractions; absent entries missing).
        seconds: ``{stage: seconds}`` (selection, each stream's base and regression stage).
        notes: one-line facts (chosen fusion weight, regression kept, warnings).
    """

    base_loss: dict[str, list[float]]
    regression_loss: dict[str, list[float]]
    tried_loss: dict[str, list[list[float]]]
    classification: dict[str, dict[str, float]]
    seconds: dict[str, float]
    notes: list[str]


def training_figures(log: dict) -> TrainingFigures:
    """Pick the plotted numbers out of ``train_log.json`` (missing keys are skipped: older runs
    and ``--stage base`` runs have fewer)."""
    base_loss, reg_loss, tried, cls, secs, notes = {}, {}, {}, {}, {}, []
    sel = log.get("selection") or {}
    if "seconds" in sel:
        secs["carved-split selection"] = float(sel["seconds"])
    test_map = log.get("test_classification_map") or {}
    for s in STREAMS:
        b = log.get(f"{s}_base") or {}
        if b.get("losses"):
            base_loss[s] = [float(x) for x in b["losses"]]
        c = {}
        if b.get("train_classification_map") is not None:
            c["training"] = float(b["train_classification_map"])
        if b.get("carved_validation_map") is not None:
            c["carved validation"] = float(b["carved_validation_map"])
        if test_map.get(s) is not None:
            c["test"] = float(test_map[s])
        if c:
            cls[s] = c
        if "seconds" in b:
            secs[f"{s} base model"] = float(b["seconds"])
        if b.get("warning"):
            notes.append(f"{s}: {b['warning']}")
        r = log.get(f"{s}_regression") or {}
        hist = [h.get("loss") for h in r.get("history") or [] if isinstance(h, dict)]
        if hist and all(h is not None for h in hist):
            reg_loss[s] = [float(h) for h in hist]
        if "seconds" in r:
            secs[f"{s} regression"] = float(r["seconds"])
        t = (sel.get("streams") or {}).get(s, {}).get("tried") or []
        if t:
            tried[s] = [[float(x) for x in x_.get("losses") or []] for x_ in t]
    chosen = (sel.get("scoring") or {}).get("chosen") or {}
    if chosen:
        notes.append("chosen on the carved split: "
                     + ", ".join(f"{k} {v}" for k, v in chosen.items()))
    bg = sel.get("background") or {}
    if "chosen" in bg:
        sc = bg.get("scores") or {}
        notes.append(f"background class {'kept' if bg['chosen'] else 'left out'} "
                     f"(carved mAP with {100 * float(sc.get('true', 0)):.1f}, "
                     f"without {100 * float(sc.get('false', 0)):.1f})")
    reg = sel.get("regression") or {}
    if "regression" in reg:
        notes.append(f"regression nets {'kept' if reg['regression'] else 'switched off'} "
                     f"(carved mAP with {100 * float(reg.get('with_regression', 0)):.1f}, "
                     f"without {100 * float(reg.get('without_regression', 0)):.1f})")
    for k in ("train_videos", "classes", "feature_dim", "seed"):
        if k in log:
            notes.append(f"{k.replace('_', ' ')}: {log[k]}")
    return TrainingFigures(base_loss, reg_loss, tried, cls, secs, notes)
