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


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}"
    return escape(str(value))


def bar_chart(labels: Sequence[str], reference: Sequence[float], current: Sequence[float],
              width: int = 320, height: int = 130) -> str:
    """Reference and current shares side by side per bin, as an inline SVG."""
    if not labels:
        return ""
    top = max([*reference, *current, 1e-9])
    slot = width / len(labels)
    bar = max(slot / 2 - 1, 1)
    plot = height - 16
    parts = [f'<svg width="{width}" height="{height}" role="img">']
    for i, (label, r, c) in enumerate(zip(labels, reference, current)):
        x = i * slot
        for offset, share, colour, who in ((0, r, _REF, "reference"), (bar, c, _CUR, "current")):
            h = plot * share / top
            parts.append(f'<rect x="{x + offset:.1f}" y="{plot - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                         f'fill="{colour}"><title>{escape(label)}: {who} {share:.1%}</title></rect>')
    parts.append(f'<line x1="0" y1="{plot}" x2="{width}" y2="{plot}" stroke="#889"/>')
    parts.append(f'<text x="0" y="{height - 2}" font-size="10">{escape(labels[0])}</text>')
    parts.append(f'<text x="{width}" y="{height - 2}" font-size="10" text-anchor="end">{escape(labels[-1])}</text>')
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
                    f"<td>{_fmt(f.get('severity'))}</td><td>{escape(method)} {_fmt(effect)}</td>"
                    f"<td>{_fmt(f.get('psi'))}</td><td>{_fmt(test)}</td><td>{_fmt(f.get('p_value'))}</td>"
                    f"<td>{_fmt(f.get('jensen_shannon'))}</td><td>{_fmt(f.get('missing', {}).get('change'))}</td></tr>")
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
                  subtitle: str = "") -> str:
    """The whole report as one HTML string (verdict, ranked table, per-feature charts, extra sections)."""
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
        + f"; {escape(verdict['correction'])} correction at alpha {verdict['alpha']:g}<ul>{reasons}</ul></div>"
        f"<h2>Features by severity</h2>{_table(features)}"
        f"<h2>Reference vs current</h2>{legend}<div class=\"cards\">{''.join(_card(f) for f in features)}</div>"
        f"{extra}</body></html>")
