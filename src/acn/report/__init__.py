"""Reports of evaluation results: a Markdown table (:func:`map_table`) and a self-contained,
interactive HTML page of a run (:func:`acn.report.html.build_report`, ``acn report``).

This module stays free of heavy imports: :mod:`acn.report.html` loads Plotly when called.
"""

from __future__ import annotations


def map_table(rows: dict) -> str:
    """Markdown table: one row per method, mAP (%) per tIoU and the average."""
    first = next(iter(rows.values()))
    keys = list(first.map)
    head = "| method | " + " | ".join(f"{t:g}" for t in keys) + " | avg |"
    sep = "|---" * (len(keys) + 2) + "|"
    lines = [head, sep]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * r.map[t]:.1f}" for t in keys)
                     + f" | {100 * r.average:.1f} |")
    return "\n".join(lines)
