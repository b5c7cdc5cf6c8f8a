"""``build_report``: one self-contained, interactive HTML page of a run and its detections.

The page opens offline: plotly.js (the browser half of Plotly, ~4.8 MB) is embedded once in a
``<script>`` tag, every figure is a Plotly figure serialised into the page, and the per-video
timelines are drawn by the page's own script (``assets/report.js``) from JSON embedded in it.
Sections: the run (config against ``configs/default.yaml``, data, training curves, timings),
mAP per tIoU and per class of every method, the DETAD-style error diagnosis
(:mod:`acn.evaluate.diagnose`), and the timelines with a video picker. docs/report.md says what
each part shows and why Plotly.
"""

from __future__ import annotations

import dataclasses
import html
import json
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

from acn import __version__
from acn.data.features import Dataset
from acn.errors import AcnError
from acn.evaluate import Detections, EvalResult, default_tious, evaluate
from acn.evaluate.diagnose import ERROR_TYPES, KIND_NAMES, KINDS, Diagnosis, diagnose
from acn.evaluate.results import DetectionDict
from acn.fileio import write_text
from acn.report import figures as F
from acn.report.runinfo import config_rows, data_summary, read_run, training_figures
from acn.report.timeline import choose_videos, timeline_data
from acn.train.outputs import BaseOutputs

_PROTOCOL_NAMES = {"activitynet": "ActivityNet", "thumos14": "THUMOS14"}


@dataclass(frozen=True)
class Method:
    """One set of detections to report: a stream of ACN or a baseline.

    Attributes:
        name: how the page names it (e.g. ``"ACN fused"``).
        detections: :class:`Detections` or ``{video_id: [(start_s, end_s, label, score)]}``.
        baseline: drawn and listed as a baseline.
        source: where the detections came from (a results file), shown on the page.
    """

    name: str
    detections: Detections | DetectionDict
    baseline: bool = False
    source: str | None = None


@dataclass(frozen=True)
class ReportInfo:
    """What :func:`build_report` wrote: the path, its size in bytes, the seconds it took, the
    videos on the timeline and the diagnosis of each method."""

    path: Path
    size: int
    seconds: float
    videos: int
    diagnoses: dict[str, Diagnosis]


def _esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _asset(name: str) -> str:
    return (resources.files("acn.report") / "assets" / name).read_text(encoding="utf-8")


def _json_script(obj: Any) -> str:
    # "</" would end the <script> element early; JSON allows "<\/" for it
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


def _table(head: Sequence[str] | None, rows: Sequence[Sequence[Any]], cls: str = "",
           row_classes: Sequence[str] | None = None, table_id: str | None = None) -> str:
    out = [f"<table class='{cls}'" + (f" id='{table_id}'" if table_id else "") + ">"]
    if head:
        out.append("<thead><tr>" + "".join(f"<th>{_esc(h)}</th>" for h in head) + "</tr></thead>")
    out.append("<tbody>")
    for i, r in enumerate(rows):
        rc = f" class='{row_classes[i]}'" if row_classes and row_classes[i] else ""
        out.append(f"<tr{rc}>" + "".join(f"<td>{_esc(c)}</td>" for c in r) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


class _Figures:
    """Serialises Plotly figures into ``<div>``s; plotly.js is embedded once, elsewhere."""

    def __init__(self) -> None:
        import plotly.io as pio

        self._pio = pio
        self.count = 0

    def __call__(self, fig: Any, div_id: str) -> str:
        self.count += 1
        return self._pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=div_id,
                                 config={"displaylogo": False, "responsive": True},
                                 default_width="100%")


def build_report(out: Path | str, ds: Dataset, methods: Sequence[Method], *,
                 run: Path | str | None = None,
                 outputs: Mapping[str, Mapping[str, BaseOutputs]] | None = None,
                 thresholds: Mapping[str, float] | None = None, subset: str | None = None,
                 protocol: str | None = None, tious: Sequence[float] | None = None,
                 diagnose_tiou: float = 0.5, max_videos: int = 250, max_points: int = 600,
                 top: int = 40, timings: Mapping[str, float] | None = None,
                 title: str | None = None) -> ReportInfo:
    """Write the HTML report of ``methods`` on ``ds`` to ``out`` (atomically).

    Args:
        out: the ``.html`` file.
        ds: the dataset (ground truth of ``subset``, and the data summary).
        methods: detections to evaluate, diagnose and draw; the first non-baseline one is the
            method whose per-class breakdown and false-positive profile are shown.
        run: the run folder (``config.yaml``, ``train_log.json``); ``None``: no run section.
        outputs: ``{stream: {video_id: BaseOutputs}}`` of the timeline's videos (SCP and
            attention curves); ``None``: timelines without curves.
        thresholds: ``{stream: attention threshold}`` of the run's base models.
        subset, protocol, tious: what :func:`acn.evaluate.evaluate` gets (defaults: the test
            subset; THUMOS14 when it has ambiguous segments, else ActivityNet; the protocol's
            thresholds).
        diagnose_tiou: the threshold of the error diagnosis.
        max_videos, max_points, top: the timeline's sampling (see :mod:`acn.report.timeline`).
        timings: more ``{stage: seconds}`` for the timing chart (e.g. localization).
        title: the page title.

    Raises :class:`AcnError` when ``methods`` is empty or names repeat, and as
    :func:`acn.evaluate.evaluate` does for detections that do not fit the ground truth.
    """
    t0 = time.perf_counter()
    if not methods:
        raise AcnError("report: no detections to report (give at least one --pred)")
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise AcnError(f"report: method names repeat: {names}")
    ann = ds.annotations
    subset = subset or ann.test_subset
    if protocol is None:
        protocol = "thumos14" if any(v.ambiguous for v in ann.subset(subset)) else "activitynet"
    tious = tuple(tious) if tious is not None else default_tious(protocol)
    pname = _PROTOCOL_NAMES.get(protocol, protocol)

    results: dict[str, EvalResult] = {}
    diags: dict[str, Diagnosis] = {}
    with warnings.catch_warnings():  # videos without detections etc.: the CLI said so already
        warnings.simplefilter("ignore")
        for m in methods:
            results[m.name] = evaluate(ann, m.detections, subset, protocol, tious,
                                       where=m.source or m.name)
            diags[m.name] = diagnose(ann, m.detections, subset, tiou=diagnose_tiou,
                                     where=m.source or m.name)
    t_eval = time.perf_counter() - t0
    primary = next((m.name for m in methods if not m.baseline), names[0])

    cfg, log = read_run(Path(run) if run is not None else None)
    train = training_figures(log)
    secs = {**train.seconds, **dict(timings or {}),
            "report: evaluation + diagnosis": t_eval}

    videos_all = ann.subset(subset)
    videos = choose_videos(videos_all, max_videos)
    tl, notes = timeline_data(videos, ann.classes, outputs, diags, thresholds,
                              max_points=max_points, top=top)
    notes = dataclasses.replace(notes, videos_total=len(videos_all))
    tl.update(colours=F.class_colours(len(ann.classes)),
              kinds=[KIND_NAMES[k] for k in KINDS], stream_colours=F.STREAM_COLOURS)

    fig = _Figures()
    parts: list[str] = []
    add = parts.append

    # -- the run ------------------------------------------------------------------------------
    add("<section id='run'><h2>The run</h2>")
    if run is not None:
        add(f"<p>Run folder <code>{_esc(run)}</code>.</p>")
    if cfg is not None:
        from acn.config import defaults

        rows = config_rows(cfg, defaults())
        n_diff = sum(r.differs for r in rows)
        add(f"<h3>Resolved config</h3><p>{n_diff} of {len(rows)} keys differ from "
            "<code>configs/default.yaml</code> (highlighted). <label><input type='checkbox' "
            "id='config-only-diff' checked> show only what differs</label></p>")
        add(_table(["key", "this run", "default"], [(r.key, r.value, r.default) for r in rows],
                   cls="config", row_classes=["diff" if r.differs else "same" for r in rows],
                   table_id="config-table"))
    add("<h3>Data</h3>")
    add(_table(None, data_summary(ds, subset), cls="kv"))
    if train.base_loss or train.regression_loss:
        add("<h3>Training</h3>")
        add(fig(F.training_curves(train), "fig-training"))
    if train.classification:
        add(fig(F.classification_bars(train), "fig-classification"))
    if train.notes:
        add("<ul class='notes'>" + "".join(f"<li>{_esc(n)}</li>" for n in train.notes)
            + "</ul>")
    add(fig(F.timing_bars(secs), "fig-timings"))
    add("</section>")

    # -- mAP -------------------------------------------------------------------------------------
    add(f"<section id='map'><h2>mAP ({_esc(pname)} protocol)</h2>")
    first = results[names[0]]
    add(f"<p>{_esc(pname)} protocol on subset <code>{_esc(subset)}</code>: "
        f"{first.num_videos} videos, {sum(first.num_ground_truth)} ground-truth segments, "
        f"{len(first.classes)} classes. mAP in percent.</p>")
    sources = {m.name: m.source for m in methods if m.source}
    head = ["method", *(f"{t:g}" for t in first.tious), "avg", "detections",
            *(["source"] if sources else [])]
    add(_table(head, [(n, *(f"{100 * v:.1f}" for v in r.map.values()), f"{100 * r.average:.1f}",
                       r.num_detections, *([sources.get(n, "")] if sources else []))
                      for n, r in results.items()], cls="num"))
    add(fig(F.map_curves(results, pname), "fig-map"))
    add(fig(F.class_heatmap(results, pname), "fig-classes"))
    add("</section>")

    # -- diagnosis -------------------------------------------------------------------------------
    d0 = diags[primary]
    add("<section id='diagnosis'><h2>Error diagnosis (DETAD)</h2>")
    add(f"<p>In the manner of DETAD (Alwassel et al., ECCV 2018), under ActivityNet matching "
        f"at tIoU {diagnose_tiou:g} whatever the protocol above. Each false positive is one of: "
        "<b>double detection</b> (tIoU &ge; t with an instance of its class already matched), "
        "<b>wrong label</b> (tIoU &ge; t with an instance of another class), "
        "<b>localization error</b> (its class, 0.1 &le; tIoU &lt; t), <b>confusion</b> "
        "(another class, 0.1 &le; tIoU &lt; t), <b>background</b> (tIoU &lt; 0.1 with every "
        "instance), in that priority. Counted among the top-"
        f"{d0.top_factor:g}G predictions of each class (G = its ground-truth instances).</p>")
    add(_table(["method", "mAP@" + f"{diagnose_tiou:g}", *(KIND_NAMES[e] for e in ERROR_TYPES),
                "false positives", "true positives", "all predictions: false positives"],
               [(n, f"{100 * d.map:.1f}", *(d.totals('top')[e] for e in ERROR_TYPES),
                 sum(d.totals('top')[e] for e in ERROR_TYPES), d.totals('top')['true_positive'],
                 sum(d.totals('all')[e] for e in ERROR_TYPES)) for n, d in diags.items()],
               cls="num"))
    add(fig(F.fp_breakdown(diags), "fig-fp-types"))
    add(fig(F.map_gain(diags), "fig-gain"))
    add(fig(F.fp_profile(d0, primary), "fig-fp-profile"))
    add(fig(F.per_class_breakdown(d0, primary), "fig-fp-classes"))
    add(fig(F.sensitivity(diags), "fig-sensitivity"))
    for n, d in diags.items():
        add(f"<details><summary>{_esc(n)}: the tables of <code>acn evaluate --diagnose"
            f"</code></summary><pre>{_esc(d.format_table())}</pre></details>")
    add("</section>")

    # -- timelines -------------------------------------------------------------------------------
    add("<section id='timelines'><h2>Per-video timelines</h2>")
    said = [f"{notes.videos_shown} of {notes.videos_total} videos of subset "
            f"<code>{_esc(subset)}</code>"
            + (" (an even sample by id)" if notes.videos_shown < notes.videos_total else "")]
    if outputs:
        said.append(f"SCP and attention curves longer than {notes.max_points} points are "
                    f"downsampled by the maximum over equal bins ({notes.downsampled_videos} "
                    "videos)")
    else:
        said.append("no SCP/attention curves (no base outputs given)")
    said.append(f"at most the {notes.top} highest-scored detections per method and video are "
                f"drawn ({notes.capped_detections} left out); opacity follows the score (its "
                "range per method); true positives at tIoU "
                f"{diagnose_tiou:g} have a black outline; hover for the score and error type")
    add("<p class='note'>" + "; ".join(said) + ". Drag to zoom, double-click to reset.</p>")
    options = "".join(
        f"<option value='{i}'{' selected' if i == _first_with_gt(tl) else ''}>"
        f"{_esc(v['id'])} - {_esc(', '.join(v['labels']) or 'no label')} - "
        f"{len(v['gt'])} GT - {v['duration']:.0f} s</option>"
        for i, v in enumerate(tl["videos"]))
    add("<div class='picker'><button id='video-prev' type='button'>&larr;</button> "
        f"<select id='video-picker'>{options}</select> "
        "<button id='video-next' type='button'>&rarr;</button> "
        "<span id='video-position'></span></div>")
    add("<div id='timeline' class='timeline'></div>")
    add(f"<script type='application/json' id='timeline-data'>{_json_script(tl)}</script>")
    add("</section>")

    build_s = time.perf_counter() - t0
    page = _page(title or f"acn report: {', '.join(names)}", parts, run, methods, build_s,
                 n_videos=notes.videos_shown)
    out = Path(out)
    write_text(out, page)
    return ReportInfo(out, len(page.encode("utf-8")), time.perf_counter() - t0,
                      notes.videos_shown, diags)


def _first_with_gt(tl: dict) -> int:
    return next((i for i, v in enumerate(tl["videos"]) if v["gt"]), 0)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;
max-width:1400px;padding:0 24px 48px;color:#222}
header{border-bottom:2px solid #1f77b4;margin-bottom:8px}
nav a{margin-right:14px}
h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:36px}
table{border-collapse:collapse;margin:8px 0 16px;font-size:13px}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f3f6fa}
table.num td:not(:first-child){text-align:right;font-variant-numeric:tabular-nums}
table.config tr.diff td{background:#fff3c4;font-weight:600}
table.config.only-diff tr.same{display:none}
table.kv td:first-child{font-weight:600;white-space:nowrap}
.note,.meta{color:#555;font-size:13px}
.picker{margin:8px 0;font-size:14px}
.picker select{font-size:14px;max-width:80%}
pre{background:#f7f7f7;padding:8px;overflow-x:auto;font-size:12px}
.plotly-graph-div{margin-bottom:12px}
"""


def _page(title: str, parts: list[str], run: Any, methods: Sequence[Method], build_s: float,
          n_videos: int) -> str:
    from plotly.offline import get_plotlyjs

    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    meta = (f"acn {__version__}, {stamp}; built in {build_s:.1f} s; methods: "
            + ", ".join(f"{_esc(m.name)}" + (" (baseline)" if m.baseline else "")
                        for m in methods)
            + f"; {n_videos} videos on the timeline. Self-contained: opens offline.")
    return "\n".join([
        "<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
        f"<title>{_esc(title)}</title>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<style>{_CSS}</style>",
        f"<script>{get_plotlyjs()}</script>",  # plotly.js, once, for every figure
        "</head><body>",
        f"<header><h1>{_esc(title)}</h1><p class='meta'>{meta}</p>",
        "<nav><a href='#run'>the run</a><a href='#map'>mAP</a>"
        "<a href='#diagnosis'>error diagnosis</a><a href='#timelines'>timelines</a></nav>"
        "</header>",
        *parts,
        f"<script>{_asset('report.js')}</script>",
        "</body></html>", ""])
