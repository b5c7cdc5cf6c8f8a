"""The report's static figures, as Plotly figures (drawn in the browser by the embedded
plotly.js; zoom, hover and legend toggles come with it). Every AP is plotted in percent."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from acn.evaluate import EvalResult
from acn.evaluate.diagnose import ERROR_TYPES, KIND_NAMES, KINDS, Diagnosis
from acn.report.runinfo import TrainingFigures

# Colours of the kinds of a detection (true positive, then the error types), and of methods.
KIND_COLOURS = {"true_positive": "#2ca02c", "double_detection": "#9467bd",
                "wrong_label": "#d62728", "localization": "#ff7f0e", "confusion": "#e377c2",
                "background": "#7f7f7f"}
STREAM_COLOURS = {"rgb": "#d62728", "flow": "#1f77b4"}
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")


def _go():
    import plotly.graph_objects as go  # lazily: `acn --help` must not pay for Plotly

    return go


def _layout(fig, title: str, height: int = 380, **kw) -> object:
    fig.update_layout(title=dict(text=title, x=0.01, xanchor="left"), height=height,
                      template="plotly_white", margin=dict(l=60, r=20, t=60, b=50),
                      legend=dict(orientation="h", y=-0.2), **kw)
    return fig


def method_colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def class_colours(n: int) -> list[str]:
    """``n`` distinguishable colours for classes (Plotly's 24-colour "Dark24", repeating)."""
    from plotly.colors import qualitative

    pal = qualitative.Dark24
    return [pal[i % len(pal)] for i in range(n)]


# -- the run ----------------------------------------------------------------------------------


def training_curves(t: TrainingFigures):
    """Loss per epoch: each stream's base model (solid), recipes tried on the carved split
    (dotted) and regression nets (right panel)."""
    from plotly.subplots import make_subplots

    go = _go()
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        "base model loss per epoch", "regression loss per epoch"))
    for s, losses in t.base_loss.items():
        fig.add_trace(go.Scatter(x=np.arange(1, len(losses) + 1), y=losses, name=f"{s} base",
                                 mode="lines+markers", line=dict(color=STREAM_COLOURS.get(s))),
                      row=1, col=1)
    for s, runs in t.tried_loss.items():
        for k, losses in enumerate(runs):
            fig.add_trace(go.Scatter(x=np.arange(1, len(losses) + 1), y=losses,
                                     name=f"{s} carved-split recipe {k + 1}", mode="lines",
                                     line=dict(color=STREAM_COLOURS.get(s), dash="dot")),
                          row=1, col=1)
    for s, losses in t.regression_loss.items():
        fig.add_trace(go.Scatter(x=np.arange(1, len(losses) + 1), y=losses,
                                 name=f"{s} regression", mode="lines+markers",
                                 line=dict(color=STREAM_COLOURS.get(s), dash="dash")),
                      row=1, col=2)
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(title_text="loss", col=1)
    return _layout(fig, "Training curves")


def classification_bars(t: TrainingFigures):
    """Video-level classification mAP per stream: training, carved validation, test."""
    go = _go()
    fig = go.Figure()
    splits = ["training", "carved validation", "test"]
    for k, split in enumerate(splits):
        streams = [s for s in t.classification if split in t.classification[s]]
        if streams:
            fig.add_trace(go.Bar(x=streams, y=[100 * t.classification[s][split] for s in streams],
                                 name=split, marker_color=PALETTE[k],
                                 text=[f"{100 * t.classification[s][split]:.1f}"
                                       for s in streams], textposition="outside"))
    fig.update_yaxes(title_text="classification mAP (%)", range=[0, 105])
    return _layout(fig, "Video classification mAP of each stream's base model (logged once "
                        "per stage)", barmode="group")


def timing_bars(seconds: Mapping[str, float]):
    go = _go()
    names = list(seconds)
    fig = go.Figure(go.Bar(y=names, x=[seconds[n] for n in names], orientation="h",
                           text=[f"{seconds[n]:.1f} s" for n in names], textposition="auto",
                           marker_color="#1f77b4"))
    fig.update_xaxes(title_text="seconds")
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, "Timings", height=max(220, 60 + 34 * len(names)), showlegend=False)


# -- mAP --------------------------------------------------------------------------------------


def map_curves(results: Mapping[str, EvalResult], protocol_name: str):
    """mAP against the tIoU threshold, one line per method."""
    go = _go()
    fig = go.Figure()
    for i, (name, r) in enumerate(results.items()):
        fig.add_trace(go.Scatter(x=list(r.tious), y=[100 * m for m in r.map.values()],
                                 name=f"{name} (avg {100 * r.average:.1f})",
                                 mode="lines+markers", line=dict(color=method_colour(i))))
    fig.update_xaxes(title_text="tIoU threshold")
    fig.update_yaxes(title_text="mAP (%)", rangemode="tozero")
    return _layout(fig, f"mAP per tIoU ({protocol_name} protocol)", height=420)


def class_heatmap(results: Mapping[str, EvalResult], protocol_name: str):
    """AP per class (rows) and method (columns); buttons pick the tIoU (or the average)."""
    go = _go()
    names = list(results)
    first = results[names[0]]
    classes = list(first.classes)
    tious = list(first.tious)

    def matrix(j: int | None) -> np.ndarray:
        cols = []
        for n in names:
            r = results[n]
            ap = r.ap.mean(axis=1) if j is None else r.ap[:, j]
            cols.append(100 * ap)
        return np.stack(cols, axis=1)

    choices = [("avg", None)] + [(f"{t:g}", j) for j, t in enumerate(tious)]
    z0 = matrix(None)
    fig = go.Figure(go.Heatmap(z=z0, x=names, y=classes, colorscale="Viridis", zmin=0, zmax=100,
                               text=np.round(z0, 1), texttemplate="%{text}",
                               colorbar=dict(title="AP (%)"),
                               hovertemplate="%{y}<br>%{x}<br>AP %{z:.1f}%<extra></extra>"))
    buttons = []
    for label, j in choices:
        z = matrix(j)
        buttons.append(dict(label=f"tIoU {label}", method="restyle",
                            args=[{"z": [z], "text": [np.round(z, 1)]}]))
    fig.update_layout(updatemenus=[dict(buttons=buttons, direction="down", x=1.0, y=1.12,
                                        xanchor="right", yanchor="top")])
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, f"AP per class ({protocol_name} protocol; menu: tIoU)",
                   height=max(360, 90 + 22 * len(classes)))


# -- diagnosis --------------------------------------------------------------------------------


def fp_breakdown(diags: Mapping[str, Diagnosis]):
    """Share of each error type among the top-kG false positives, one bar per method."""
    go = _go()
    names = list(diags)
    fig = go.Figure()
    for e in ERROR_TYPES:
        shares, counts = [], []
        for n in names:
            tot = diags[n].totals("top")
            n_fp = sum(tot[x] for x in ERROR_TYPES)
            counts.append(tot[e])
            shares.append(100 * tot[e] / n_fp if n_fp else 0.0)
        fig.add_trace(go.Bar(y=names, x=shares, orientation="h", name=KIND_NAMES[e],
                             marker_color=KIND_COLOURS[e], customdata=counts,
                             text=[f"{s:.0f}%" if s >= 4 else "" for s in shares],
                             textposition="inside",
                             hovertemplate="%{y}<br>" + KIND_NAMES[e]
                             + ": %{customdata} (%{x:.1f}%)<extra></extra>"))
    k = next(iter(diags.values())).top_factor
    fig.update_xaxes(title_text=f"share of the false positives among the top-{k:g}G "
                                "predictions of each class (%)", range=[0, 100])
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, "False-positive types (DETAD)", barmode="stack",
                   height=max(260, 120 + 40 * len(names)))


def map_gain(diags: Mapping[str, Diagnosis]):
    """mAP gained (points) if every false positive of a type were removed."""
    go = _go()
    fig = go.Figure()
    for i, (name, d) in enumerate(diags.items()):
        g = d.map_gain
        fig.add_trace(go.Bar(x=[KIND_NAMES[e] for e in ERROR_TYPES],
                             y=[100 * g[e] for e in ERROR_TYPES], name=name,
                             marker_color=method_colour(i),
                             hovertemplate=name + "<br>%{x}: +%{y:.2f} points<extra></extra>"))
    t = next(iter(diags.values())).tiou
    fig.update_yaxes(title_text=f"mAP@{t:g} gain (points)")
    return _layout(fig, "mAP gained if an error type were removed", barmode="group")


def fp_profile(d: Diagnosis, name: str):
    """DETAD's false-positive profile: the kinds among the top-kG predictions, k = 1..10."""
    go = _go()
    ks = sorted(d.profile)
    fig = go.Figure()
    for i, kind in enumerate(KINDS):
        tot = [max(int(d.profile[k].sum()), 1) for k in ks]
        fig.add_trace(go.Bar(x=[f"{k}G" for k in ks],
                             y=[100 * d.profile[k][i] / n for k, n in zip(ks, tot)],
                             name=KIND_NAMES[kind], marker_color=KIND_COLOURS[kind],
                             customdata=[int(d.profile[k][i]) for k in ks],
                             hovertemplate=KIND_NAMES[kind]
                             + ": %{customdata} (%{y:.1f}%)<extra></extra>"))
    fig.update_yaxes(title_text="share of the predictions (%)", range=[0, 100])
    fig.update_xaxes(title_text="top-kG predictions of each class")
    return _layout(fig, f"False-positive profile of {name}", barmode="stack")


def per_class_breakdown(d: Diagnosis, name: str):
    """The kinds among each class's top-kG predictions (counts)."""
    go = _go()
    fig = go.Figure()
    for i, kind in enumerate(KINDS):
        fig.add_trace(go.Bar(x=list(d.classes), y=d.top[:, i], name=KIND_NAMES[kind],
                             marker_color=KIND_COLOURS[kind]))
    fig.update_yaxes(title_text=f"predictions (top-{d.top_factor:g}G)")
    return _layout(fig, f"Per class: kinds of the top-{d.top_factor:g}G predictions of {name}",
                   barmode="stack", height=420)


def sensitivity(diags: Mapping[str, Diagnosis]):
    """Normalized mAP_N per bucket of action length and of instances per video."""
    from plotly.subplots import make_subplots

    go = _go()
    first = next(iter(diags.values()))
    titles = [f"{'action length (s)' if s.characteristic == 'length' else 'instances of its class in the video'}"
              for s in first.sensitivity]
    fig = make_subplots(rows=1, cols=len(titles), subplot_titles=titles)
    for i, (name, d) in enumerate(diags.items()):
        for col, s in enumerate(d.sensitivity, start=1):
            labels = [f"{lab}<br>({n} GT)" for lab, n in zip(s.bucket_labels(),
                                                             s.num_ground_truth)]
            fig.add_trace(go.Bar(x=labels, y=[None if np.isnan(m) else 100 * m
                                              for m in s.map_n],
                                 name=f"{name} (all: {100 * d.map_n:.1f})",
                                 marker_color=method_colour(i), legendgroup=name,
                                 showlegend=col == 1), row=1, col=col)
    fig.update_yaxes(title_text=f"normalized mAP_N@{first.tiou:g} (%)", col=1)
    return _layout(fig, "Sensitivity of AP to the ground truth (DETAD's normalized mAP_N; "
                        "legend: over all instances)", barmode="group", height=420)
