"""The drift report's sections beyond the features: drift over time, cohorts, shadow mode, ground truth.

Each function takes its part of the report payload
(:func:`analytics.drift.report.build_drift_report`) and returns escaped HTML
with inline SVG (no script, no external URL), for
:func:`analytics.drift.report_html.render_report`'s ``extra_sections``::

    over_time_html(payload["drift_over_time"])    # feature x window heatmap of severity
    cohorts_html(payload["cohorts"])              # cohorts ranked by drift
    shadow_html(payload["shadow"])                # coverage, agreement, kappa, error bound, flip matrices
    ground_truth_html(payload["ground_truth"])    # accuracy by version and inference time, label lag, cadence

A section without data says so ("no data", or "too few events" beside
rates measured on fewer than :data:`analytics.drift.report.MIN_EVENTS`).
"""

from __future__ import annotations

from html import escape
from typing import Sequence

from analytics.drift.report import MIN_EVENTS
from analytics.drift.report_html import format_value, short_label

_CELL_H = 16
_LABEL_W = 150
_INSUFFICIENT = "#dfe3ea"
_LINE_COLOURS = ("#3b6fb6", "#e07b39", "#4a9a5b", "#9b59b6", "#b3261e", "#6d7a8a")


def _share(value) -> str:
    return "–" if value is None else f"{value:.1%}"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A table of already escaped cells."""
    cells = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return "<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + f"</tr>{cells}</table>"


def _note(text: str) -> str:
    return f'<p class="small">{escape(text)}</p>'


def _severity_colour(severity: float) -> str:
    """White through pale red (severity 1: the threshold) to dark red (2 and beyond)."""
    t = max(0.0, min(severity / 2.0, 1.0))
    low, high = (0xf6, 0xf7, 0xf9), (0xb3, 0x26, 0x1e)
    return "#" + "".join(f"{round(a + (b - a) * t):02x}" for a, b in zip(low, high))


def _time_label(window: str) -> str:
    """``2026-11-03T14:00:00Z`` -> ``11-03 14:00`` (``11-03`` at midnight)."""
    date, _, clock = window.partition("T")
    clock = clock[:5]
    return date[5:] if clock == "00:00" else f"{date[5:]} {clock}"


def over_time_html(data: dict) -> str:
    """Feature x window heatmap: colour is severity (effect / threshold), a dark edge marks a drifted window."""
    windows, features = data["windows"], data["features"]
    if not windows:
        return _note("no data: no drift result in the range")
    step = max(4.0, min(36.0, 880 / len(windows)))
    width, height = _LABEL_W + step * len(windows) + 4, _CELL_H * len(features) + 34
    parts = [f'<svg width="{width:.0f}" height="{height}" role="img">']
    for row, feature in enumerate(features):
        y = row * _CELL_H
        name = feature["name"]
        parts.append(f'<text x="{_LABEL_W - 6}" y="{y + 12}" font-size="11" text-anchor="end">'
                     f'<title>{escape(name)}</title>{escape(short_label(name, 22))}</text>')
        for col, cell in enumerate(feature["cells"]):
            if cell is None:
                continue
            status, severity = cell["status"], cell["severity"] or 0.0
            fill = _INSUFFICIENT if status == "insufficient_data" else _severity_colour(severity)
            edge = ' stroke="#4a0d09" stroke-width="1.5"' if status == "drifted" else ""
            parts.append(f'<rect x="{_LABEL_W + col * step:.1f}" y="{y + 1}" width="{step - 1:.1f}" '
                         f'height="{_CELL_H - 2}" fill="{fill}"{edge}><title>{escape(name)} · '
                         f'{escape(windows[col])} · {escape(status)} · severity {severity:.2f}</title></rect>')
    every = max(1, round(len(windows) / 8))
    base = _CELL_H * len(features) + 14
    for col in range(0, len(windows), every):
        parts.append(f'<text x="{_LABEL_W + col * step:.1f}" y="{base}" font-size="10">'
                     f'{escape(_time_label(windows[col]))}</text>')
    legend = (f'severity: <span style="background:{_severity_colour(0)}"></span>0'
              f'<span style="background:{_severity_colour(1)}"></span>1 (threshold)'
              f'<span style="background:{_severity_colour(2)}"></span>2+'
              f'<span style="background:{_INSUFFICIENT}"></span>insufficient data; a dark edge marks a drifted window')
    return "".join(parts) + f'</svg><p class="legend small">{legend}</p>'


def cohorts_html(cohorts: list[dict]) -> str:
    """Cohorts ranked by verdict, number of drifted features and severity."""
    if not cohorts:
        return _note("no data: no cohort has a drift result")
    rows = [[escape(c["label"]), escape(c["model_version"]), escape(_time_label(c["window_start"])),
             f'<span class="{"drifted" if c["status"] == "drifted" else ""}">{escape(c["recommendation"])}</span>',
             escape(", ".join(c["drifted"])) or "–", format_value(c["severity"]), format_value(c["current_count"])]
            for c in cohorts]
    return _table(("cohort", "version", "window", "verdict", "drifted features", "severity", "inferences"), rows)


def _bound(row: dict) -> str:
    if row.get("edge_error_upper") is None:
        return "– (no labels measure the cloud's error)"
    return (f"{_share(row['edge_error_lower'])} .. {_share(row['edge_error_upper'])} "
            f"({escape(row.get('cloud_error_source') or '')} cloud error {_share(row['cloud_error_rate'])})")


def _flip_matrix(version: str, flips: list[dict]) -> str:
    if not flips:
        return ""
    edge = sorted({f["edge_label"] for f in flips})
    cloud = sorted({f["cloud_label"] for f in flips})
    counts = {(f["edge_label"], f["cloud_label"]): f["pairs"] for f in flips}
    rows = []
    for e in edge:
        total = sum(counts.get((e, c), 0) for c in cloud) or 1
        cells = []
        for c in cloud:
            n = counts.get((e, c), 0)
            style = ' style="font-weight:600"' if e == c else ""
            cells.append(f'<span{style} title="{n / total:.1%} of edge {escape(e)}">{n}</span>')
        rows.append([f"edge {escape(e)}", *cells])
    return (f'<h3 class="small">flip matrix of {escape(version)} (matched pairs; rows: edge label, '
            f'columns: cloud label)</h3>' + _table(("", *(f"cloud {c}" for c in cloud)), rows))


def shadow_html(shadow: dict) -> str:
    """Per edge model version: coverage, agreement, kappa, the label-free edge error bound, the flip matrix."""
    if shadow["status"] == "no data":
        return _note("no data: no edge inference of this model has a cloud shadow in the range")
    rows = [[escape(r["model_version"]), escape(r.get("cloud_version") or "–"), format_value(r["edge_requests"]),
             _share(r["coverage"]), format_value(r["compared"]), _share(r["agreement_rate"]),
             format_value(r["kappa"]), _bound(r), _share(r.get("measured_edge_error")),
             escape(r["status"])] for r in shadow["versions"]]
    table = _table(("edge version", "cloud version", "edge requests", "coverage", "compared pairs", "agreement",
                    "Cohen's kappa", "edge error bound (label-free)", "measured edge error", "events"), rows)
    notes = _note("The bound |d - e_c| <= e_e <= d + e_c follows from disagreement d and the cloud's error e_c "
                  "(docs/shadow.md). Shadows without an edge answer: " + str(shadow["orphan_shadows"]) + ".")
    if shadow["status"] == "too few events":
        notes += _note(f"too few events: rates on fewer than {MIN_EVENTS} compared pairs are not stable")
    flips = "".join(_flip_matrix(r["model_version"], r["flips"]) for r in shadow["versions"])
    return table + notes + flips


def _accuracy_chart(by_time: list[dict], width: int = 640, height: int = 180) -> str:
    """Accuracy per version over inference time, one line each (labelled steps only)."""
    points = [r for r in by_time if r.get("accuracy") is not None and r.get("model_version")]
    if not points:
        return ""
    times = sorted({r["step_start"] for r in points})
    x_of = {t: 40 + (width - 60) * (i / max(len(times) - 1, 1)) for i, t in enumerate(times)}
    low = min(0.5, min(r["accuracy"] for r in points))
    plot = height - 24

    def y(value: float) -> float:
        return 6 + (plot - 6) * (1 - (value - low) / (1 - low or 1))

    parts = [f'<svg width="{width}" height="{height}" role="img">',
             f'<line x1="40" y1="{plot}" x2="{width - 20}" y2="{plot}" stroke="#889"/>']
    for value in (low, (low + 1) / 2, 1.0):
        parts.append(f'<text x="34" y="{y(value) + 4:.1f}" font-size="10" text-anchor="end">{value:.0%}</text>')
    versions = sorted({r["model_version"] for r in points})
    for i, version in enumerate(versions):
        colour = _LINE_COLOURS[i % len(_LINE_COLOURS)]
        series = [r for r in points if r["model_version"] == version]
        path = " ".join(f"{x_of[r['step_start']]:.1f},{y(r['accuracy']):.1f}" for r in series)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for r in series:
            parts.append(f'<circle cx="{x_of[r["step_start"]]:.1f}" cy="{y(r["accuracy"]):.1f}" r="3" '
                         f'fill="{colour}"><title>{escape(version)} {escape(r["step_start"])}: accuracy '
                         f'{_share(r["accuracy"])} of {r["class_labelled"]} labels</title></circle>')
        parts.append(f'<text x="{width - 20}" y="{14 + i * 14}" font-size="11" fill="{colour}" '
                     f'text-anchor="end">{escape(version)}</text>')
    for t, anchor in ((times[0], "start"), (times[-1], "end")):
        parts.append(f'<text x="{x_of[t]:.1f}" y="{plot + 14}" font-size="10" text-anchor="{anchor}">'
                     f'{escape(_time_label(t))}</text>')
    return "".join(parts) + "</svg>"


def ground_truth_html(truth: dict) -> str:
    """Accuracy (or error) per version against late labels, over inference time; label lag; retraining cadence."""
    cadence = truth["retraining_cadence"]
    cadence_html = ("<h3 class=\"small\">retraining cadence (versions by first edge use)</h3>" + _table(
        ("version", "first seen", "last seen", "days since previous"),
        [[escape(r["model_version"]), escape(r["first_seen"]), escape(r["last_seen"]),
          format_value(r["days_since_previous"])] for r in cadence])) if cadence else ""
    if truth["status"] == "no data":
        return _note("no data: no ground-truth label joined an inference of this model in the range") + cadence_html
    lag = {r["model_version"]: r for r in truth["label_lag"]}
    rows = []
    for r in truth["versions"]:
        version_lag = lag.get(r["model_version"], {})
        mean_lag, max_lag = version_lag.get("lag_mean_s"), version_lag.get("lag_max_s")
        rows.append([escape(r["model_version"] or "–"), format_value(r["inferences"]), format_value(r["labelled"]),
                     _share(r["label_coverage"]), _share(r["accuracy"]), _share(r["cloud_accuracy"]),
                     format_value(r["mae"]), format_value(r["tracking_corr"]),
                     "–" if mean_lag is None else f"{mean_lag / 3600:.1f} h",
                     "–" if max_lag is None else f"{max_lag / 3600:.1f} h", escape(r["status"])])
    table = _table(("version", "inferences", "labelled", "label coverage", "edge accuracy", "cloud accuracy",
                    "MAE", "disagreement vs error (corr.)", "mean label lag", "max label lag", "events"), rows)
    return table + _accuracy_chart(truth["by_time"]) + cadence_html
