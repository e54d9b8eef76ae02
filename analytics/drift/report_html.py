"""One self-contained HTML drift report: inline CSS and SVG, no script, no external URL.

::

    html = render_report(result.to_json(), title="training vs serving")
    html = render_report(payload, title="detector 2.4.0", extra_sections=[("Shadow mode", shadow_html)])
    Path("report.html").write_text(html)

``payload`` is :meth:`analytics.drift.verdict.DriftResult.to_json` (or the
same shape from stored results); each extra section is a heading and HTML
the caller has already escaped. A feature costs about 3 KB, so 50 features
stay far below 1 MB.
"""

from __future__ import annotations

from html import escape
from typing import Sequence

from analytics.drift.verdict import p_value_text

_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#1d2330;max-width:1100px}
h1{font-size:22px}h2{font-size:18px;margin-top:28px}table{border-collapse:collapse;font-size:13px}
td,th{border-bottom:1px solid #dde;padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}
.verdict{padding:12px 16px;border-radius:6px;margin:12px 0}.retrain{background:#fde2e1}
.investigate{background:#fff3cd}.no-action{background:#e3f4e1}.insufficient-data{background:#eceff3}
.drifted{color:#b3261e;font-weight:600}.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{border:1px solid #dde;border-radius:6px;padding:8px;width:340px}.card h3{font-size:14px;margin:2px 0 6px}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px}.small{font-size:12px;color:#556}
"""
_REF, _CUR = "#8aa4c8", "#e07b39"


def format_value(value) -> str:
    """A table cell: 3 significant digits, yes / no, an en dash for no value; escaped."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}"
    return escape(str(value))


def format_p_value(value) -> str:
    """A p-value cell: ``0.0021``, or ``< 1e-300`` where it underflowed to 0 (never a bare 0)."""
    return "–" if value is None else escape(p_value_text(value).removeprefix("p = ").removeprefix("p "))


def short_label(label: str, limit: int = 14) -> str:
    """A label cut to ``limit`` characters with an ellipsis (the full text goes in a <title>)."""
    return label if len(label) <= limit else label[:limit - 1] + "…"


def bar_chart(labels: Sequence[str], reference: Sequence[float], current: Sequence[float],
              width: int = 320, height: int = 170) -> str:
    """Reference and current shares side by side per bin, every bin labelled (rotated), as an inline SVG."""
    if not labels:
        return ""
    top = max([*reference, *current, 1e-9])
    pad = 44  # room on the left for the first rotated label
    slot = (width - pad) / len(labels)
    bar = max(slot / 2 - 1, 1)
    plot = height - 56  # room below for the rotated labels
    parts = [f'<svg width="{width}" height="{height}" role="img">']
    for i, (label, r, c) in enumerate(zip(labels, reference, current)):
        x = pad + i * slot
        for offset, share, colour, who in ((0, r, _REF, "reference"), (bar, c, _CUR, "current")):
            h = plot * share / top
            parts.append(f'<rect x="{x + offset:.1f}" y="{plot - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                         f'fill="{colour}"><title>{escape(label)}: {who} {share:.1%}</title></rect>')
        centre = x + slot / 2
        parts.append(f'<text x="{centre:.1f}" y="{plot + 10}" font-size="9" text-anchor="end" '
                     f'transform="rotate(-40 {centre:.1f} {plot + 10})"><title>{escape(label)}</title>'
                     f'{escape(short_label(label))}</text>')
    parts.append(f'<line x1="{pad}" y1="{plot}" x2="{width}" y2="{plot}" stroke="#889"/>')
    return "".join(parts) + "</svg>"


def _effect(feature: dict):
    method = feature.get("effect_method") or ""
    return method, feature.get("cramers_v" if method == "chi_square" else method)


def _table(features: list[dict]) -> str:
    head = ("<tr><th>feature</th><th>kind</th><th>status</th><th>severity</th><th>effect</th><th>PSI</th>"
            "<th>KS / chi²</th><th>p-value</th><th>JS</th><th>missing Δ</th></tr>")
    rows = []
    for f in features:
        method, effect = _effect(f)
        test = f.get("ks") if f["kind"] == "numeric" else f.get("chi_square")
        css = ' class="drifted"' if f.get("drifted") else ""
        rows.append(f"<tr><td{css}>{escape(f['name'])}</td><td>{f['kind']}</td><td{css}>{escape(f['status'])}</td>"
                    f"<td>{format_value(f.get('severity'))}</td><td>{escape(method)} {format_value(effect)}</td>"
                    f"<td>{format_value(f.get('psi'))}</td><td>{format_value(test)}</td>"
                    f"<td>{format_p_value(f.get('p_value'))}</td>"
                    f"<td>{format_value(f.get('jensen_shannon'))}</td><td>{format_value(f.get('missing', {}).get('change'))}</td></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _card(feature: dict) -> str:
    dist = feature.get("distribution") or {}
    chart = bar_chart(dist.get("labels", []), dist.get("reference", []), dist.get("current", []))
    reasons = "<br>".join(escape(r) for r in feature.get("reasons", [])) or "no drift signal"
    css = "drifted" if feature.get("drifted") else ""
    return (f'<div class="card"><h3 class="{css}">{escape(feature["name"])} '
            f'<span class="small">({feature["kind"]}, {escape(feature["status"])})</span></h3>{chart}'
            f'<div class="small">{reasons}</div></div>')


def render_report(payload: dict, title: str = "Drift report", extra_sections: Sequence[tuple[str, str]] = (),
                  subtitle: str = "", charted: Sequence[dict] | None = None) -> str:
    """The whole report as one HTML string (verdict, ranked table, per-feature charts, extra sections).

    ``charted``: the features that get a chart card (default: every feature).
    """
    verdict = payload["verdict"]
    recommendation = verdict["recommendation"]
    reasons = "".join(f"<li>{escape(r)}</li>" for r in verdict.get("reasons", []))
    features = payload.get("features", [])
    legend = (f'<p class="legend small"><span style="background:{_REF}"></span>reference'
              f'<span style="background:{_CUR}"></span>current (shares per bin: reference deciles or categories)</p>')
    extra = "".join(f"<h2>{escape(heading)}</h2>{body}" for heading, body in extra_sections)
    share = verdict.get("drifted_share")
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{escape(title)}</h1>" + (f'<p class="small">{escape(subtitle)}</p>' if subtitle else "")
        + f'<div class="verdict {recommendation.replace(" ", "-")}"><strong>{escape(recommendation.upper())}</strong>'
        f" — {verdict['drifted_features']} of {verdict['evaluated_features']} evaluated features drifted"
        + (f" ({share:.0%})" if share is not None else "")
        + f"; {escape(verdict['correction'])} correction at alpha {format_value(verdict['alpha'])}<ul>{reasons}</ul></div>"
        f"<h2>Features by severity</h2>{_table(features)}"
        f"<h2>Reference vs current</h2>{legend}<div class=\"cards\">{''.join(_card(f) for f in (features if charted is None else charted))}</div>"
        f"{extra}</body></html>")
