"""Simulated fleets whose SLO behaviour is known in advance, for live tests of the SLO alerts.

A :class:`Scenario` is a small fleet (devices with the data contract's
resource attributes) running edge models over a time range that ends at
about now, plus a plan of segments per cohort. :func:`send` delivers it to a
running ``fleetwatch serve`` over real OTLP/HTTP from the OpenTelemetry SDK,
with the event times in the past, so the server's jobs evaluate the whole
range at once. The scenario's own per-minute good/total counts are the
expected truth::

    scenario = Scenario(sites={"s1": 3, "s2": 3}, duration="3h", rate_per_minute=20, error_rate=0.001, seed=7)
    scenario.outage({"fleet.site": "s2"}, start="-2h", end="-90m")      # every inference fails
    scenario.slow_burn({"fleet.site": "s1"}, error_rate=0.004)         # burn 4x on a 99.9 % SLO
    scenario.single_failure({"device.id": "s1-cam-00"}, at="-30m")    # one extra, failed inference
    scenario.latency({"fleet.site": "s1"}, median_ms=400, start="-50m", end="-40m")
    scenario.traffic({"fleet.site": "s2"}, per_minute=0.5, start="-1h")  # a quiet night
    scenario.silent({"fleet.site": "s2"}, start="-20m", end="-10m")    # devices send nothing
    scenario.backlog({"fleet.site": "s1"}, start="-40m", end="-20m")   # uploaded after everything else
    scenario.deployment({"fleet.site": "s2"}, at="-1h", rollout_id="r-42", to_version="v4")
    report = send(scenario, collector.http_url)   # the live part in time order, then the backlog
    scenario.counts(group_by=("site",))           # {(minute, ("s2",)): (good, total), ...}
    scenario.counts(group_by=("site",), latency_ms=250, include_backlog=False)

``send(scenario, url, part="live")`` then ``part="backlog"`` lets a test
look at the server in between. A ticket (3x over 1d and 2h) needs a scenario
of at least a day: 6 devices at 10 a minute for a day are 86,400 spans.

Times of segments are offsets from ``scenario.end`` (``"-3h"``, ``"-90m"``,
a negative ``timedelta``) or absolute naive-UTC datetimes; ranges are
``[start, end)`` and open ends mean the scenario's own start or end. Cohorts
select devices (and, for events, models) by attribute: ``{"fleet.site":
"s2"}``, ``{"ml.model.name": "detector", "device.class": ["rpi5"]}``. Where
segments of one kind overlap, the later one wins. Every draw is made once
per event from the seed, so two scenarios with the same seed and fleet have
the same events, and a segment changes only what it says.

Traffic: each device runs every model at ``rate_per_minute`` inferences per
minute: the integer part every minute, the fraction as a seeded coin, so an
integer rate is exact. Latency is lognormal around the median (sigma 0.25).

Expected page delay (for a test's timeout and for asserting detection). A
rule fires when both its windows burn faster than its factor ``f``, i.e. the
error ratio exceeds ``f x (1 - o)`` for objective ``o``. With steady traffic,
``t`` minutes into an outage of error rate ``e`` after a baseline of ``b``,
the long window ``L`` (minutes) holds ``t`` minutes at ``e`` and ``L - t``
at ``b``::

    ratio(t) = (t x e + (L - t) x b) / L  >  f x (1 - o)
    <=>  t  >  L x (f x (1 - o) - b) / (e - b)

and the same with the short window ``S``, which is reached first since
``S < L``. The page comes at the first whole minute ``t`` past both, so
``t = floor(L x (f(1-o) - b) / (e - b)) + 1`` (or 0 when the baseline
already burns that fast, never when ``e <= f(1-o)``). Example: page quick
(f = 14.4, L = 60 m) on a 99.9 % SLO, ``b = 0.001``, ``e = 1``: 0.0134 x 60 /
0.999 = 0.80, so 1 minute; on a 99 % SLO 8.6, so 9 minutes. An outage of
part of an SLO group has ``e`` = outage error x the cohort's share of the
group's traffic. :func:`expected_page_delay` computes it. The wall clock
adds the evaluator's job delay and tick (the minute must be closed and
rolled up first), and a low-traffic guard can hold a page back. The same
arithmetic says when one failure alone pages: it exceeds the threshold
over the long window when that window holds fewer than ``1 / (f(1-o))``
events (69.4 for 14.4x on 99.9 %), so a quiet-hour test of "no page" needs
either more traffic than that or the guard.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, NamedTuple

import numpy as np

from analytics.times import utc_naive
from tests.scenario_draws import check_rate, check_share, hashes, ns, parse_offset, uniforms
from tests.scenario_send import PARTS, SendReport, send

__all__ = ["Scenario", "send", "SendReport", "PARTS", "expected_page_delay", "PageRule", "PAGE_QUICK", "PAGE_SLOW",
           "parse_offset", "hashes"]

MINUTE = timedelta(minutes=1)
# Attribute key -> column of the ``spans`` view (and SLO dimension, where it is one).
COLUMNS = {"service.name": "service_name", "device.id": "device_id", "fleet.site": "site",
           "fleet.region": "region", "device.class": "device_class",
           "device.firmware.version": "firmware_version", "ml.model.name": "model_name",
           "ml.model.version": "model_version"}
ATTRIBUTES = {column: key for key, column in COLUMNS.items()}
MODEL_KEYS = ("ml.model.name", "ml.model.version")
LATENCY_SIGMA = 0.25


@dataclass(frozen=True)
class Segment:
    """One planned change for a cohort over ``[start, end)`` (naive UTC)."""

    kind: str  # traffic | errors | latency | silent | backlog | failure | deployment
    cohort: dict
    start: datetime
    end: datetime
    value: Any = None


class Events(NamedTuple):
    """The scenario's inferences, one entry per span, sorted by device then start time."""

    device: np.ndarray       # index into Scenario.devices
    model: np.ndarray        # index into Scenario.models
    version: np.ndarray      # index into Scenario.versions
    start_ns: np.ndarray
    duration_ns: np.ndarray
    error: np.ndarray        # status ERROR
    held: np.ndarray         # in a backlog: sent after everything else
    key: np.ndarray          # what the event's draws and ids hash (uint64)


def _values(wanted: Any) -> list:
    return list(wanted) if isinstance(wanted, (list, tuple, set, frozenset)) else [wanted]


class Scenario:
    """A fleet and its plan; see the module docstring for a usage guide.

    ``sites`` maps a site to its device count; devices are named
    ``{site}-cam-{i:02d}``, alternate ``device_classes`` and run every one
    of ``models`` (``(name, version)`` pairs). ``end`` defaults to the
    current minute's start (the last whole minute is ``[end - 1m, end)``).
    """

    def __init__(self, sites: dict[str, int] | None = None, models: Iterable[tuple[str, str]] = (("detector", "v3"),),
                 duration: Any = "3h", end: datetime | None = None, rate_per_minute: float = 10.0,
                 error_rate: float = 0.0, latency_ms: float = 20.0, seed: int = 0,
                 regions: dict[str, str] | None = None, device_classes: tuple[str, ...] = ("jetson-orin", "rpi5"),
                 firmware_version: str = "4.2.1", service_name: str = "vision-edge") -> None:
        sites = {"s1": 3, "s2": 3} if sites is None else sites
        if not sites or any(n < 1 for n in sites.values()):
            raise ValueError(f"sites: give each site at least one device, got {sites!r}")
        self.models = [tuple(m) for m in models]
        if not self.models:
            raise ValueError("models: give at least one (name, version)")
        span = parse_offset(duration, "duration")
        if span < MINUTE or span % MINUTE:
            raise ValueError(f"duration: a positive whole number of minutes, got {duration!r}")
        check_rate(rate_per_minute, "rate_per_minute")
        check_share(error_rate, "error_rate")
        if latency_ms <= 0:
            raise ValueError(f"latency_ms: must be positive, got {latency_ms!r}")
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        self.end = utc_naive(end) if end is not None else now.replace(second=0, microsecond=0)
        self.start = self.end - span
        self.rate_per_minute, self.error_rate, self.latency_ms, self.seed = rate_per_minute, error_rate, latency_ms, seed
        regions = regions or {}
        self.devices = [
            {"service.name": service_name, "device.id": f"{site}-cam-{i:02d}", "fleet.site": site,
             "fleet.region": regions.get(site, "eu-central"), "device.class": device_classes[i % len(device_classes)],
             "device.firmware.version": firmware_version}
            for site, n in sites.items() for i in range(n)]
        self.versions = sorted({v for _, v in self.models})
        self.segments: list[Segment] = []
        self._events: Events | None = None

    # -- the plan ------------------------------------------------------
    def _time(self, value: Any, default: datetime, name: str) -> datetime:
        if value is None:
            return default
        if isinstance(value, datetime):
            return utc_naive(value)
        return self.end + parse_offset(value, name)

    def _add(self, kind: str, cohort: dict, start: Any, end: Any, value: Any = None) -> "Scenario":
        self._device_mask(cohort)  # validates the cohort now, not at the first use
        lo, hi = self._time(start, self.start, f"{kind}.start"), self._time(end, self.end, f"{kind}.end")
        if not lo < hi and kind not in ("failure", "deployment"):
            raise ValueError(f"{kind}: start {lo} must be before end {hi}")
        self.segments.append(Segment(kind, dict(cohort), lo, hi, value))
        self._events = None
        return self

    def traffic(self, cohort: dict, per_minute: float, start: Any = None, end: Any = None) -> "Scenario":
        """Inferences per device (and model) per minute for the cohort."""
        check_rate(per_minute, "per_minute")
        return self._add("traffic", cohort, start, end, per_minute)

    def errors(self, cohort: dict, error_rate: float, start: Any = None, end: Any = None) -> "Scenario":
        """Probability that an inference of the cohort fails."""
        check_share(error_rate, "error_rate")
        return self._add("errors", cohort, start, end, error_rate)

    def outage(self, cohort: dict, start: Any, end: Any, error_rate: float = 1.0) -> "Scenario":
        return self.errors(cohort, error_rate, start, end)

    def slow_burn(self, cohort: dict, error_rate: float, start: Any = None, end: Any = None) -> "Scenario":
        return self.errors(cohort, error_rate, start, end)

    def latency(self, cohort: dict, median_ms: float, start: Any = None, end: Any = None) -> "Scenario":
        if median_ms <= 0:
            raise ValueError(f"median_ms: must be positive, got {median_ms!r}")
        return self._add("latency", cohort, start, end, median_ms)

    def single_failure(self, cohort: dict, at: Any) -> "Scenario":
        """One extra failed inference, on the cohort's first device and model, at ``at``."""
        when = self._time(at, self.end, "single_failure.at")
        if not self.start <= when < self.end:
            raise ValueError(f"single_failure.at: {when} is outside the scenario [{self.start}, {self.end})")
        return self._add("failure", cohort, when, when)

    def silent(self, cohort: dict, start: Any, end: Any) -> "Scenario":
        """The cohort's devices send nothing over the range (their inferences are lost)."""
        return self._add("silent", cohort, start, end)

    def backlog(self, cohort: dict, start: Any, end: Any, send_at: str = "last") -> "Scenario":
        """The cohort's data of the range is held back and sent after everything else (an offline site)."""
        if send_at != "last":
            raise ValueError(f"backlog.send_at: only 'last' is supported, got {send_at!r}")
        return self._add("backlog", cohort, start, end)

    def deployment(self, cohort: dict, at: Any, rollout_id: str, stage: str = "canary", outcome: str = "success",
                   to_version: str | None = None) -> "Scenario":
        """A ``deployment`` span per device at ``at``; with ``to_version`` its inferences run that version after."""
        if outcome not in ("success", "failed", "rolled_back"):
            raise ValueError(f"deployment.outcome: success, failed or rolled_back, got {outcome!r}")
        if to_version is not None and to_version not in self.versions:
            self.versions.append(to_version)
        when = self._time(at, self.end, "deployment.at")
        return self._add("deployment", cohort, when, when, (rollout_id, stage, outcome, to_version))

    # -- cohorts -------------------------------------------------------
    def _device_mask(self, cohort: dict) -> np.ndarray:
        """Which devices the cohort's resource attributes select (a cohort matching nothing is refused)."""
        unknown = set(cohort) - set(COLUMNS)
        if unknown:
            raise ValueError(f"cohort: unknown attribute(s) {sorted(unknown)}; use {', '.join(COLUMNS)}")
        mask = np.ones(len(self.devices), bool)
        for key, wanted in cohort.items():
            if key not in MODEL_KEYS:
                mask &= np.isin(np.array([d[key] for d in self.devices]), _values(wanted))
        if not mask.any() or not self._model_mask(cohort).any():
            raise ValueError(f"cohort {cohort!r} matches no device and model of the scenario")
        return mask

    def _model_mask(self, cohort: dict, model: np.ndarray | None = None, version: np.ndarray | None = None):
        """Which models the cohort selects; given events' model and version indices, which events."""
        model = np.arange(len(self.models)) if model is None else model
        if version is None:
            version = np.array([self.versions.index(v) for _, v in self.models])[model]
        mask = np.ones(model.size, bool)
        if "ml.model.name" in cohort:
            mask &= np.isin(np.array([m[0] for m in self.models])[model], _values(cohort["ml.model.name"]))
        if "ml.model.version" in cohort:
            mask &= np.isin(np.array(self.versions)[version], _values(cohort["ml.model.version"]))
        return mask

    def _event_mask(self, events: Events, cohort: dict, lo: datetime, hi: datetime) -> np.ndarray:
        in_range = (events.start_ns >= ns(lo)) & (events.start_ns < ns(hi))
        return (self._device_mask(cohort)[events.device] & in_range
                & self._model_mask(cohort, events.model, events.version))

    def _of(self, kind: str) -> list[Segment]:
        return [s for s in self.segments if s.kind == kind]

    # -- the events ----------------------------------------------------
    @property
    def events(self) -> Events:
        if self._events is None:
            self._events = self._generate()
        return self._events

    def _generate(self) -> Events:
        minutes = int((self.end - self.start) / MINUTE)
        n_dev, n_mod = len(self.devices), len(self.models)
        minute_ns = ns(self.start) + np.arange(minutes, dtype=np.int64) * 60 * 10**9
        rate = np.full((n_dev, n_mod, minutes), float(self.rate_per_minute))
        for s in self._of("traffic"):
            in_range = (minute_ns >= ns(s.start)) & (minute_ns < ns(s.end))
            cells = self._device_mask(s.cohort)[:, None, None] & self._model_mask(s.cohort)[None, :, None]
            rate[cells & in_range[None, None, :]] = s.value
        coin = uniforms(self.seed, 0, np.arange(rate.size, dtype=np.uint64)).reshape(rate.shape)
        per_cell = (np.floor(rate) + (coin < rate - np.floor(rate))).astype(np.int64).ravel()
        cell = np.repeat(np.arange(per_cell.size), per_cell)
        n = cell.size
        # An event's draws hang on its cell and rank in the cell only, so that a
        # segment changing one cohort's traffic leaves every other event as it was.
        rank = np.arange(n) - np.repeat(np.cumsum(per_cell) - per_cell, per_cell)
        keys = (cell.astype(np.uint64) << np.uint64(20)) | rank.astype(np.uint64)
        device, model, minute = np.unravel_index(cell, rate.shape)
        start_ns = minute_ns[minute] + (uniforms(self.seed, 1, keys) * 60e9).astype(np.int64)
        u_error = uniforms(self.seed, 2, keys)
        z_latency = np.sqrt(-2 * np.log1p(-uniforms(self.seed, 3, keys))) * np.cos(
            2 * np.pi * uniforms(self.seed, 4, keys))  # Box-Muller
        version = np.array([self.versions.index(self.models[m][1]) for m in range(n_mod)], np.int64)[model]
        events = Events(device, model, version, start_ns, np.zeros(n, np.int64), np.zeros(n, bool), np.zeros(n, bool),
                        keys)
        for s in self._of("deployment"):
            if s.value[3] is not None:
                events.version[self._event_mask(events, s.cohort, s.start, self.end)] = self.versions.index(s.value[3])
        p_error = np.full(n, float(self.error_rate))
        median = np.full(n, float(self.latency_ms))
        for kind, target in (("errors", p_error), ("latency", median)):
            for s in self._of(kind):
                target[self._event_mask(events, s.cohort, s.start, s.end)] = s.value
        duration = (median * 1e6 * np.exp(LATENCY_SIGMA * z_latency)).astype(np.int64) + 1
        events = events._replace(duration_ns=duration, error=u_error < p_error)
        keep = np.ones(n, bool)
        for s in self._of("silent"):
            keep &= ~self._event_mask(events, s.cohort, s.start, s.end)
        events = Events(*(a[keep] for a in events))
        failures = [self._failure(i, s) for i, s in enumerate(self._of("failure"))]
        if failures:
            events = Events(*(np.concatenate([a, np.array(extra, a.dtype)]) for a, extra in zip(events, zip(*failures))))
        for s in self._of("backlog"):
            events.held[self._event_mask(events, s.cohort, s.start, s.end)] = True
        order = np.lexsort((events.start_ns, events.device))
        return Events(*(a[order] for a in events))

    def _failure(self, i: int, s: Segment) -> tuple:
        device = int(np.flatnonzero(self._device_mask(s.cohort))[0])
        model = int(np.flatnonzero(self._model_mask(s.cohort))[0])
        return (device, model, self.versions.index(self.models[model][1]), ns(s.start),
                int(self.latency_ms * 1e6), True, False, 1 << 63 | i)

    def deployments(self) -> list[tuple[int, int, dict]]:
        """(device index, time ns, span attributes) of every deployment span."""
        out = []
        for s in self._of("deployment"):
            rollout_id, stage, outcome, to_version = s.value
            for device in np.flatnonzero(self._device_mask(s.cohort)):
                attrs = {"deployment.kind": "model", "deployment.rollout.id": rollout_id,
                         "deployment.rollout.stage": stage, "deployment.outcome": outcome}
                if to_version is not None:
                    attrs["deployment.version.to"] = to_version
                out.append((int(device), ns(s.start), attrs))
        return out

    # -- the expected truth --------------------------------------------
    def counts(self, group_by: Iterable[str] = (), latency_ms: float | None = None,
               include_backlog: bool = True) -> dict[tuple[datetime, tuple], tuple[int, int]]:
        """``{(minute, group values): (good, total)}`` of inference spans, minutes and groups without events left out.

        ``group_by``: columns (``site``, ``model_name``, ...) or attribute
        keys (``fleet.site``). Good is "not ERROR", or with ``latency_ms``
        "duration at or under the threshold" (as the SLI job counts them).
        """
        keys = [k if k in COLUMNS else ATTRIBUTES.get(k, k) for k in group_by]
        unknown = [k for k in keys if k not in COLUMNS]
        if unknown:
            raise ValueError(f"group_by: unknown {unknown}; use {', '.join(ATTRIBUTES)}")
        e = self.events
        chosen = np.ones(e.device.size, bool) if include_backlog else ~e.held
        good = ~e.error if latency_ms is None else e.duration_ns <= int(latency_ms * 1e6)
        minute = (e.start_ns - ns(self.start)) // (60 * 10**9)
        columns = []
        for key in keys:
            if key == "ml.model.name":
                columns.append(np.array([m[0] for m in self.models])[e.model].tolist())
            elif key == "ml.model.version":
                columns.append(np.array(self.versions)[e.version].tolist())
            else:
                columns.append(np.array([d[key] for d in self.devices])[e.device].tolist())
        out: dict[tuple[datetime, tuple], list[int]] = {}
        for m, g, take, *group in zip(minute.tolist(), good.tolist(), chosen.tolist(), *columns):
            if take:
                row = out.setdefault((self.start + int(m) * MINUTE, tuple(group)), [0, 0])
                row[0] += g
                row[1] += 1
        return {k: (v[0], v[1]) for k, v in sorted(out.items())}

@dataclass(frozen=True)
class PageRule:
    """A burn-rate rule as the Workbook states it: factor, long and short window (any object with these works)."""

    factor: float
    long_window: timedelta
    short_window: timedelta


# The Workbook's page rules for a 30-day SLO ("Alerting on SLOs", recommended parameters).
PAGE_QUICK = PageRule(14.4, timedelta(hours=1), timedelta(minutes=5))
PAGE_SLOW = PageRule(6.0, timedelta(hours=6), timedelta(minutes=30))


def expected_page_delay(baseline_error: float, outage_error: float, objective: float,
                        rule: Any = PAGE_QUICK) -> timedelta | None:
    """Whole minutes of outage until both windows of ``rule`` burn faster than its factor; None: never.

    The window arithmetic of the module docstring, assuming steady traffic
    and a long window full of baseline before the outage began.
    """
    for name, value in (("baseline_error", baseline_error), ("outage_error", outage_error)):
        check_share(value, name)
    if not 0 < objective < 1:
        raise ValueError(f"objective: a share in (0, 1), got {objective!r}")
    threshold = rule.factor * (1 - objective)  # the error ratio a window must exceed
    if baseline_error > threshold:
        return timedelta(0)
    if outage_error <= threshold:
        return None
    minutes = 0
    for window in (rule.long_window, rule.short_window):
        needed = (window / MINUTE) * (threshold - baseline_error) / (outage_error - baseline_error)
        minutes = max(minutes, math.floor(needed) + 1)
    return minutes * MINUTE
