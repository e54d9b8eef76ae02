"""Plotly helpers so every chart looks alike: one palette, states in fixed colours, units on axes, UTC said.

    fig = lines(frame, "time", "p95_ms", color="group")             # a line per group, the palette's colours
    fig = bars(frame, "site", "devices", color="status", colours=STATE_COLOURS)
    show(fig, y="p95 latency (ms)")                      # x defaults to "time (UTC)"
    st.plotly_chart(...)                                 # never called by pages directly: use show()

``bars``, ``lines``, ``spans`` and ``heatmap`` draw what Plotly Express's
bar, line, timeline and imshow draw, built as plain traces: Express spent
27-66 ms of the server's time on each figure, 4 ms as traces; the executive
page draws seven (docs/benchmarks.md).
"""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import plotly.io as pio
import streamlit as st

# No Plotly template: Streamlit's chart theme styles every chart in the browser, and validating one took
# 12 ms of every figure's 17 ms when built as traces (docs/benchmarks.md).
pio.templates.default = "none"
px.defaults.template = "none"

# Plotly's "Safe" qualitative palette: distinguishable for the common colour-vision deficiencies.
PALETTE = ["#88CCEE", "#CC6677", "#DDCC77", "#117733", "#332288", "#AA4499", "#44AA99", "#999933",
           "#882255", "#661100", "#6699CC", "#888888"]

# A state means the same colour on every page.
STATE_COLOURS = {"firing": "#C0392B", "page": "#C0392B", "drifted": "#C0392B", "failed": "#C0392B",
                 "stale": "#E67E22", "pending": "#E67E22", "ticket": "#E67E22", "rolled_back": "#E67E22",
                 "ok": "#27AE60", "online": "#27AE60", "succeeded": "#27AE60", "resolved": "#7F8C8D",
                 "no_data": "#95A5A6", "low_traffic": "#95A5A6", "insufficient_data": "#95A5A6",
                 "in_progress": "#3498DB"}

TIME_AXIS = "time (UTC)"
# Points per line the browser is asked to draw: a day of minutes (1,440) per line made the on-call page's
# burn-rate charts WebGL charts, drawn in software by a browser without a GPU, a second each.
MAX_POINTS = 360


def _series(frame: pd.DataFrame, color: str | None, colours: dict | None):
    """(name, rows, colour) per value of ``color`` in order of appearance (one series without it)."""
    if color is None:
        yield None, frame, PALETTE[0]
        return
    for i, (value, part) in enumerate(frame.groupby(color, sort=False, dropna=False)):
        yield str(value), part, (colours or {}).get(value) or PALETTE[i % len(PALETTE)]


def _hover(part: pd.DataFrame, axes: list[tuple[str, str]], hover: dict[str, str]) -> dict:
    """customdata and a hovertemplate naming ``axes`` ((trace variable, label) pairs such as ("x", "site"))
    and ``hover`` (column -> d3 format such as ":.1%", or "")."""
    lines = [f"{label}=%{{{axis}}}" for axis, label in axes]
    lines += [f"{column}=%{{customdata[{i}]{fmt}}}" for i, (column, fmt) in enumerate(hover.items())]
    return {"customdata": part[list(hover)].to_numpy() if hover else None, "hovertemplate": "<br>".join(lines)}


def bars(frame: pd.DataFrame, x: str, y: str, *, color: str | None = None, colours: dict | None = None,
         horizontal: bool = False, grouped: bool = False, hover: dict[str, str] | None = None,
         text: str | None = None) -> go.Figure:
    """Bars of ``y`` over ``x`` (``horizontal``: of ``x`` along ``y``), stacked per ``color`` unless ``grouped``."""
    traces = []
    for name, part, colour in _series(frame, color, colours):
        traces.append({"type": "bar", "x": part[x], "y": part[y], "name": name, "marker": {"color": colour},
                       "orientation": "h" if horizontal else "v", "showlegend": name is not None,
                       "text": part[text] if text else None, **_hover(part, [("x", x), ("y", y)], hover or {})})
    return go.Figure(data=traces, layout={"barmode": "group" if grouped else "relative"})


def lines(frame: pd.DataFrame, x: str, y: str, *, color: str | None = None, colours: dict | None = None,
          markers: bool = False, hover: dict[str, str] | None = None) -> go.Figure:
    """A line of ``y`` over ``x`` per value of ``color`` (SVG: a browser without a GPU draws WebGL slowly)."""
    traces = []
    for name, part, colour in _series(frame, color, colours):
        part = part.sort_values(x)
        traces.append({"type": "scatter", "mode": "lines+markers" if markers else "lines", "x": part[x],
                       "y": part[y], "name": name, "line": {"color": colour}, "showlegend": name is not None,
                       **_hover(part, [("x", x), ("y", y)], hover or {})})
    return go.Figure(data=traces)


def spans(frame: pd.DataFrame, start: str, end: str, y: str, *, color: str | None = None,
          colours: dict | None = None, hover: dict[str, str] | None = None) -> go.Figure:
    """A bar from ``start`` to ``end`` (datetimes) per row, on the row's ``y`` (a Gantt chart)."""
    traces = []
    for name, part, colour in _series(frame, color, colours):
        length = (part[end] - part[start]).dt.total_seconds() * 1000  # a date axis counts in milliseconds
        traces.append({"type": "bar", "base": part[start], "x": length, "y": part[y], "orientation": "h",
                       "name": name, "marker": {"color": colour}, "showlegend": name is not None,
                       **_hover(part, [("base", start), ("y", y)], hover or {})})
    return go.Figure(data=traces, layout={"barmode": "overlay", "xaxis": {"type": "date"}})


def heatmap(grid: pd.DataFrame, *, colorscale: str, zmin: float, zmax: float | None = None, title: str,
            text_format: str | None = None, customdata=None, hovertemplate: str | None = None) -> go.Figure:
    """``grid``'s values as cells, its first row on top (as an image is drawn)."""
    trace = {"type": "heatmap", "z": grid.to_numpy(), "x": list(grid.columns), "y": list(grid.index),
             "colorscale": colorscale, "zmin": zmin, "zmax": zmax, "colorbar": {"title": {"text": title}},
             "customdata": customdata, "hovertemplate": hovertemplate}
    if text_format:
        trace["texttemplate"] = f"%{{z:{text_format}}}"
    return go.Figure(data=[trace], layout={"yaxis": {"autorange": "reversed"}})


def show(fig: go.Figure, *, y: str, x: str = TIME_AXIS, height: int = 320, key: str | None = None,
         legend: bool = True, title: str | None = None, legend_right: bool = False) -> None:
    """Lay ``fig`` out the common way and put it on the page, full width (the legend above, or right of it)."""
    if title:
        fig.update_layout(title={"text": title, "x": 0, "xanchor": "left", "font": {"size": 14}})
    above = {"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "left", "x": 0}
    right = {"orientation": "v", "yanchor": "top", "y": 1, "xanchor": "left", "x": 1.01}
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 60 if title else 30, "b": 10},
                      xaxis_title=x, yaxis_title=y, legend={**(right if legend_right else above), "title": None},
                      showlegend=legend, hovermode="closest")
    st.plotly_chart(fig, width="stretch", key=key, config={"displaylogo": False})


def times(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """``frame`` with ``columns`` (RFC 3339 text from the API) as UTC timestamps, without the zone for Plotly."""
    frame = frame.copy()
    for column in columns:
        if column in frame:
            frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601").dt.tz_localize(None)
    return frame


def thin(frame: pd.DataFrame, x: str, value: str, by: str | None = None, max_points: int = MAX_POINTS
         ) -> pd.DataFrame:
    """At most ``max_points`` points per series (per ``by``): each is the first ``x`` and the highest ``value`` of
    a run of consecutive points, so a burn rate's or a latency's peak is never thinned away."""
    parts = [frame] if by is None else [part for _, part in frame.groupby(by, sort=False)]
    kept = []
    for part in parts:
        part = part.sort_values(x)
        run = -(-len(part) // max_points)
        if run <= 1:
            kept.append(part)
            continue
        buckets = pd.Series(range(len(part)), index=part.index) // run
        first = part.groupby(buckets.to_numpy()).head(1).set_index(buckets.unique())
        first[value] = part.groupby(buckets.to_numpy())[value].max().to_numpy()
        kept.append(first.reset_index(drop=True))
    return pd.concat(kept, ignore_index=True) if kept else frame


def percent(value: float | None) -> str:
    return "–" if value is None or pd.isna(value) else f"{value:.1%}"


def number(value: float | None) -> str:
    return "–" if value is None or pd.isna(value) else f"{value:,.0f}"


def compact(value: float | None) -> str:
    """A count short enough for a metric tile: 4,309,251,200 as 4.31 B (below a million, in full)."""
    if value is None or pd.isna(value) or abs(value) < 1e6:
        return number(value)
    scale, unit = (1e9, "B") if abs(value) >= 1e9 else (1e6, "M")
    return f"{value / scale:,.2f} {unit}"


def group_label(key: str | None) -> str:
    """An SLO or drift group stored as JSON text (``{"site":"ams-factory-1"}``) as ``site=ams-factory-1``."""
    import json

    if not key or key == "{}":
        return "all"
    try:
        return ", ".join(f"{k}={v}" for k, v in json.loads(key).items())
    except (ValueError, AttributeError):
        return str(key)


def time_columns(*names: str) -> dict:
    """Column configs that show ``names`` (made datetimes with :func:`times`) to the minute, saying UTC."""
    return {name: st.column_config.DatetimeColumn(f"{name.replace('_', ' ')} (UTC)", format="YYYY-MM-DD HH:mm")
            for name in names}



def panel_layout(titles: list[str], *, columns: int = 1, x_title: str | None = None, vspace: float = 0.14,
                 hspace: float = 0.08) -> tuple[dict, list[tuple[str, str]]]:
    """A layout of ``len(titles)`` panels in rows of ``columns`` sharing one time axis (titled ``x_title`` under
    the bottom row), and each panel's (xaxis, yaxis) names for its traces: what ``make_subplots`` lays out,
    without its cost per figure. ``layout[axis_key(name)]`` is a panel's axis."""
    rows = -(-len(titles) // columns)
    width = (1 - hspace * (columns - 1)) / columns
    height = (1 - vspace * (rows - 1)) / rows
    layout: dict = {"annotations": []}
    axes = []
    for i, title in enumerate(titles):
        row, col = divmod(i, columns)
        x_name, y_name = ("x", "y") if i == 0 else (f"x{i + 1}", f"y{i + 1}")
        left, top = col * (width + hspace), 1 - row * (height + vspace)
        bottom = row == rows - 1 or i + columns >= len(titles)  # the last panel of its column
        layout[axis_key(x_name)] = {"domain": _unit(left, left + width), "anchor": y_name,
                                    **({"matches": "x"} if i else {}), "showticklabels": bottom,
                                    **({"title": {"text": x_title}} if bottom and x_title else {})}
        layout[axis_key(y_name)] = {"domain": _unit(top - height, top), "anchor": x_name}
        layout["annotations"].append({"text": title, "x": left + width / 2, "y": top, "xref": "paper", "yref": "paper",
                                      "xanchor": "center", "yanchor": "bottom", "showarrow": False,
                                      "font": {"size": 13}})
        axes.append((x_name, y_name))
    return layout, axes


def axis_key(name: str) -> str:
    """The layout key of a trace's axis name: "x" is "xaxis", "y2" is "yaxis2"."""
    return f"{name[0]}axis{name[1:]}"


def _unit(low: float, high: float) -> list[float]:
    """A domain within [0, 1] (the spacing arithmetic leaves -5e-17 where 0 was meant)."""
    return [min(max(round(low, 9), 0.0), 1.0), min(max(round(high, 9), 0.0), 1.0)]


def time_panels(frame: pd.DataFrame, panels: list[tuple[str, list[str], bool]], *, key: str, columns: int = 2,
                row_height: int = 240) -> None:
    """Several series over ``time`` in one figure: the browser draws one Plotly chart much faster than four.

    Each panel is (title with unit, columns, share): one column draws a line per ``group`` (the golden
    signals' grouping); several draw a line each (their maximum over groups), e.g. p50/p95/p99.
    """
    layout, axes = panel_layout([p[0] for p in panels], columns=columns, x_title=TIME_AXIS)
    groups = list(dict.fromkeys(frame["group"])) if "group" in frame else ["all"]
    colour = {g: PALETTE[i % len(PALETTE)] for i, g in enumerate(groups)}
    traces = []
    for i, ((_, names, share), (x_axis, y_axis)) in enumerate(zip(panels, axes)):
        on = {"xaxis": x_axis, "yaxis": y_axis, "type": "scatter", "mode": "lines"}
        if len(names) == 1:
            for group in groups:
                part = frame[frame["group"] == group] if "group" in frame else frame
                traces.append({**on, "x": part["time"], "y": part[names[0]], "name": str(group),
                               "legendgroup": str(group), "showlegend": i == 0 and len(groups) > 1,
                               "line": {"color": colour[group]}})
        else:
            worst = frame.groupby("time")[names].max().reset_index()
            for j, name in enumerate(names):
                traces.append({**on, "x": worst["time"], "y": worst[name], "name": name.removesuffix("_ms"),
                               "line": {"color": PALETTE[-1 - j], "dash": "dot"}})
        if share:
            layout[axis_key(y_axis)]["tickformat"] = ".3~%"
    rows = -(-len(panels) // columns)
    show(go.Figure(data=traces, layout=layout), y="", x=TIME_AXIS if rows == 1 else "", key=key,
         height=rows * row_height + 40, legend_right=True)
