"""The drift report of one model: verdict, ranked features, distributions, drift over time, cohorts, shadow, labels.

One builder serves every source. It takes a *query runner* (``run(name,
params) -> records``, :mod:`analytics.api.runner`) and assembles the
payload from the read API's named queries only (``drift_status``,
``drift_features``, ``drift_distribution``, ``shadow_agreement``,
``shadow_flips``, ``ground_truth_accuracy``, ``label_lag``,
``retraining_cadence``), so a report built through a running server's API
and one built on a file no server holds are the same, value for value::

    request = DriftReportRequest.parse("defect-detector", cohort=["site=atl-factory-2"], window="1d")
    payload = build_drift_report(ReadApiClient(url).records, request)     # or open_file_runner(path)
    payload["verdict"]["recommendation"]      # "retrain" | "investigate" | "no action" | "insufficient data"
    html = render_drift_report(payload)       # one self-contained HTML file (no script, no external URL)

The report never reads the clock: without a range it covers the span
before the newest result (14 days of daily windows, 2 days of hourly
ones), so two builds from the same data are identical. docs/drift.md
("The drift report") describes every section.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from analytics.api.params import parse_time

QueryRunner = Callable[[str, Mapping[str, str]], list[dict]]

WINDOWS = ("1h", "1d")
COHORT_DIMENSIONS = ("site", "region", "device_class", "firmware_version")
# Without a range the report looks back this far from the newest result.
LOOKBACK = {"1h": timedelta(days=2), "1d": timedelta(days=14)}
# A range up to this long is shown in hourly windows, a longer one in daily windows.
HOURLY_RANGE_MAX = timedelta(days=2)
# Below this many compared pairs (shadow) or labelled inferences, rates are shown but flagged.
MIN_EVENTS = 30
_VERDICT_RANK = {"retrain": 0, "investigate": 1, "no action": 2, "insufficient data": 3}


class ReportError(ValueError):
    """The report cannot be built as asked; the message is one line for the user."""


class NoDriftResults(ReportError):
    """The drift job has no results for the model (version, cohort) asked for."""


@dataclass(frozen=True)
class DriftReportRequest:
    """What a report covers: a model, optionally one version and one cohort, and its windows.

    ``window`` is ``1h`` or ``1d`` (result windows of that length, looking back
    from the newest), or a range ``START..END`` (RFC 3339 with a zone;
    hourly windows up to 2 days, daily beyond). ``cohort`` is empty (the
    whole version) or one ``{dimension: value}``: the drift job keeps
    cohorts of one dimension each.
    """

    model: str
    version: str | None = None
    cohort: Mapping[str, str] = field(default_factory=dict)
    window: str = "1d"
    top_features: int = 8

    @classmethod
    def parse(cls, model: str, version: str | None = None, cohort: Sequence[str] | str | None = None,
              window: str | None = None) -> DriftReportRequest:
        """A request from user text: ``cohort`` as ``KEY=VALUE`` (one, or a list of them)."""
        pairs: dict[str, str] = {}
        for text in [cohort] if isinstance(cohort, str) else (cohort or []):
            key, sep, value = text.partition("=")
            if not sep or not key or not value:
                raise ReportError(f"a cohort is KEY=VALUE (e.g. site=atl-factory-2), not {text!r}")
            pairs[key.strip()] = value.strip()
        return cls(model, version or None, pairs, window or "1d").validate()

    def validate(self) -> DriftReportRequest:
        if not self.model:
            raise ReportError("name the model (ml.model.name)")
        unknown = sorted(set(self.cohort) - set(COHORT_DIMENSIONS))
        if unknown:
            raise ReportError(f"unknown cohort dimension {unknown[0]!r}: use one of {', '.join(COHORT_DIMENSIONS)}")
        if len(self.cohort) > 1:
            raise ReportError("the drift job keeps cohorts of one dimension each: give one KEY=VALUE")
        if self.top_features < 1:
            raise ReportError("top_features must be at least 1")
        self.window_range()
        return self

    def window_range(self) -> tuple[str, datetime | None, datetime | None]:
        """``(window length, since, until)``; since and until are None without a range."""
        if self.window in WINDOWS:
            return self.window, None, None
        start, sep, end = self.window.partition("..")
        if not sep:
            raise ReportError(f"window must be 1h, 1d or START..END (RFC 3339 times), not {self.window!r}")
        try:
            since, until = parse_time(start), parse_time(end)
        except ValueError as exc:
            raise ReportError(f"window: {exc}") from None
        if until <= since:
            raise ReportError(f"window: {end} is not after {start}")
        return ("1h" if until - since <= HOURLY_RANGE_MAX else "1d"), since, until

    @property
    def cohort_key(self) -> str:
        """The cohort as the drift tables store it: ``{}`` or ``{"site":"..."}``."""
        return json.dumps(dict(self.cohort), separators=(",", ":"))

    def query_params(self) -> dict[str, str]:
        """The read API's report parameters (``GET /api/v1/reports/drift``) for this request."""
        params = {"model": self.model, "window": self.window}
        if self.version:
            params["version"] = self.version
        if self.cohort:
            params["cohort"] = "{}={}".format(*next(iter(self.cohort.items())))
        return params


def _text(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _recommendation(row: dict) -> str:
    return (row.get("verdict") or "insufficient data").replace("_", " ")


def _cohort_label(cohort: str) -> str:
    pairs = json.loads(cohort)
    return ", ".join(f"{k}={v}" for k, v in pairs.items()) or "whole version"


def build_drift_report(run: QueryRunner, request: DriftReportRequest) -> dict:
    """The report's JSON payload (``render_drift_report`` draws it); :class:`NoDriftResults` when empty."""
    request.validate()
    length, since, until = request.window_range()
    model = {"model_name": request.model, "window": length}
    if request.version:
        model["model_version"] = request.version
    statuses = run("drift_status", {**model, **({"until": _text(until)} if until else {})})
    if not statuses:
        what = f"model {request.model!r}" + (f" version {request.version!r}" if request.version else "")
        raise NoDriftResults(f"no drift results for {what} in {length} windows"
                             + (f" before {_text(until)}" if until else ""))
    focus = [r for r in statuses if r["cohort"] == request.cohort_key]
    if not focus:
        raise NoDriftResults(f"no drift results for model {request.model!r} in cohort "
                             f"{_cohort_label(request.cohort_key)}")
    current = max(focus, key=lambda r: (r["window_start"], r["reference_start"] or "", r["model_version"]))
    version = current["model_version"]
    if until is None:
        until = parse_time(current["window_end"])
        since = until - LOOKBACK[length]
    span = {"since": _text(since), "until": _text(until)}
    scope = {"model_name": request.model, "model_version": version, "cohort": request.cohort_key, "window": length}
    history = run("drift_features", {**scope, **span})
    features = _ranked([r for r in history if r["window_start"] == current["window_start"]])
    for feature in features[:request.top_features]:
        if feature["status"] != "insufficient_data":
            feature["distribution"] = _distribution(run(
                "drift_distribution", {**scope, "feature": feature["name"], "at": current["window_start"]}))
    versions = {"model_name": request.model, **({"model_version": request.version} if request.version else {})}
    return _rounded({
        "report": "drift", "model": request.model, "model_version": version, "version_requested": request.version,
        "cohort": dict(request.cohort), "window": length, "range": span,
        "current_window": {k: current[k] for k in ("window_start", "window_end", "hours", "current_count",
                                                   "reference_kind", "reference_start")},
        "verdict": _verdict(current),
        "features": features,
        "drift_over_time": _over_time(history),
        "cohorts": _cohorts([r for r in statuses if r["cohort"] != "{}" and r["model_version"] == version]),
        "shadow": _shadow(run, {**versions, **span}),
        "ground_truth": _ground_truth(run, versions, span, "day" if length == "1d" else "hour"),
    })


def _rounded(value):
    """Floats to 12 significant digits: DuckDB's parallel aggregates (sums, corr) vary in the last bits."""
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def _verdict(row: dict) -> dict:
    evaluated = row.get("evaluated_features")
    drifted = list(row.get("drifted_features") or [])
    return {"recommendation": _recommendation(row), "status": row["status"], "reasons": list(row["reasons"] or []),
            "drifted": drifted, "drifted_features": len(drifted), "evaluated_features": evaluated or 0,
            "drifted_share": len(drifted) / evaluated if evaluated else None,
            "correction": row.get("correction") or "–", "alpha": row.get("alpha"), "severity": row.get("severity")}


def _ranked(rows: list[dict]) -> list[dict]:
    """Feature rows in the shape the HTML report's table reads, drifted first, then by severity."""
    features = []
    for r in rows:
        drifted = None if r["status"] == "insufficient_data" else r["status"] == "drifted"
        features.append({
            "name": r["feature"], "kind": r["kind"], "status": r["status"], "drifted": drifted,
            "severity": r["severity"], "effect_method": r.get("effect_method") or "",
            **{k: r.get(k) for k in ("psi", "ks", "wasserstein", "jensen_shannon", "chi_square", "linf",
                                     "cramers_v", "p_value", "reference_count", "current_count")},
            "missing": {"change": r["missing_share_change"]}, "reasons": list(r.get("reasons") or [])})
    return sorted(features, key=lambda f: (not f["drifted"], -(f["severity"] or 0.0), f["name"]))


def _distribution(rows: list[dict]) -> dict:
    rows = sorted(rows, key=lambda r: r["bin"])
    return {"window_start": rows[0]["window_start"] if rows else None, "labels": [r["label"] for r in rows],
            "reference": [r["reference_share"] for r in rows], "current": [r["current_share"] for r in rows]}


def _over_time(history: list[dict]) -> dict:
    """Feature x window: each cell the window's status and severity (None where the window has no result)."""
    windows = sorted({r["window_start"] for r in history})
    column = {w: i for i, w in enumerate(windows)}
    cells: dict[str, list] = {}
    for r in history:
        row = cells.setdefault(r["feature"], [None] * len(windows))
        row[column[r["window_start"]]] = {"status": r["status"], "severity": r["severity"]}
    worst = {name: max((c["severity"] or 0.0 for c in row if c), default=0.0) for name, row in cells.items()}
    order = sorted(cells, key=lambda name: (-worst[name], name))
    return {"windows": windows, "features": [{"name": n, "cells": cells[n]} for n in order]}


def _cohorts(rows: list[dict]) -> list[dict]:
    """Cohorts ranked by where drift concentrates: verdict, number of drifted features, severity."""
    out = [{"cohort": json.loads(r["cohort"]), "label": _cohort_label(r["cohort"]),
            "model_version": r["model_version"], "window_start": r["window_start"], "status": r["status"],
            "recommendation": _recommendation(r), "drifted": list(r["drifted_features"] or []),
            "severity": r["severity"], "current_count": r["current_count"]} for r in rows]
    return sorted(out, key=lambda c: (_VERDICT_RANK[c["recommendation"]], -len(c["drifted"]),
                                      -(c["severity"] or 0.0), c["label"], c["model_version"]))


def _status(count: int | None) -> str:
    return "no data" if not count else "too few events" if count < MIN_EVENTS else "ok"


def _shadow(run: QueryRunner, params: dict) -> dict:
    rows = run("shadow_agreement", params)
    versions = [r for r in rows if r["model_version"] is not None]
    orphans = sum(r["shadow_orphans"] or 0 for r in rows if r["model_version"] is None)
    flips: dict[str, list] = {}
    if versions:
        for r in run("shadow_flips", params):
            flips.setdefault(r["model_version"], []).append(
                {"edge_label": r["edge_label"], "cloud_label": r["cloud_label"], "pairs": r["pairs"]})
    for r in versions:
        r["status"] = _status(r["compared"])
        r["flips"] = flips.get(r["model_version"], [])
    compared = sum(r["compared"] or 0 for r in versions)
    return {"status": _status(compared) if versions else "no data", "versions": versions,
            "orphan_shadows": orphans}


def _ground_truth(run: QueryRunner, versions: dict, span: dict, step: str) -> dict:
    accuracy = run("ground_truth_accuracy", {**versions, **span, "step": step})
    lag = run("label_lag", {**versions, **span})
    totals = run("ground_truth_accuracy", {**versions, **span})
    cadence = run("retraining_cadence", {"model_name": versions["model_name"], "until": span["until"],
                                          "since": _text(parse_time(span["until"]) - timedelta(days=365))})
    for r in totals:
        r["status"] = _status(r["labelled"])
    labelled = sum(r["labelled"] or 0 for r in totals)
    return {"status": _status(labelled), "versions": totals, "by_time": accuracy, "label_lag": lag,
            "retraining_cadence": cadence}


def render_drift_report(payload: dict) -> str:
    """The payload as one self-contained HTML file (analytics.drift.report_html's report plus its sections)."""
    from analytics.drift.report_html import render_report
    from analytics.drift.report_sections import cohorts_html, ground_truth_html, over_time_html, shadow_html

    version = payload["model_version"]
    cohort = ", ".join(f"{k}={v}" for k, v in payload["cohort"].items()) or "whole version"
    window = payload["current_window"]
    subtitle = (f"{payload['model']} {version} · {cohort} · {payload['window']} window {window['window_start']} .. "
                f"{window['window_end']} ({window['current_count']} inferences) against the "
                f"{window['reference_kind']} reference from {window['reference_start'] or '–'} · range "
                f"{payload['range']['since']} .. {payload['range']['until']}")
    charted = [f for f in payload["features"] if f.get("distribution")]
    return render_report(
        payload, title=f"Drift report: {payload['model']} {version} · {cohort}", subtitle=subtitle, charted=charted,
        extra_sections=[("Drift over time", over_time_html(payload["drift_over_time"])),
                        ("Cohorts where drift concentrates", cohorts_html(payload["cohorts"])),
                        ("Shadow mode (edge vs cloud)", shadow_html(payload["shadow"])),
                        ("Ground truth", ground_truth_html(payload["ground_truth"]))])
