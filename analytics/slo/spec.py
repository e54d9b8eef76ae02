"""SLO specs: the YAML file of SLOs, parsed into typed dataclasses and validated.

An SLO file lists SLOs; each names what is good, how much of it must be
good and over which rolling period::

    slos:
      - name: detector-success
        description: Detector inferences succeed
        sli: {kind: success}                  # good = inference span status not ERROR
        objective: 0.995
        period: 30d                           # rolling; 30d default, 28d and 7d too
        group_by: [model_name, site]          # one budget and one alert per model x site
        filters: {model_name: detector}       # a value or a list of values
        labels: {team: vision}
        annotations: {runbook_url: https://runbooks.example/detector}
        alerting: {page: true, ticket: true, min_events: 100}

    specs = load_slo_file("slos.yaml")        # -> list[SloSpec]; SloSpecError names the bad field

SLI kinds (``sli.kind``):

``success``
    inference spans whose status is not ERROR, among inference spans.
``latency``
    inference spans with ``duration_ns <= threshold_ms * 1e6``, exact from the
    raw duration (never a histogram bucket); needs ``sli.threshold_ms``.
``freshness``
    devices whose newest telemetry (any signal, by gateway receive time) is
    at most ``sli.max_staleness_minutes`` old, among devices known (heard
    from within ``sli.known_for``, default 1d); device dimensions only.
``deployment``
    deployment spans that succeeded, among deployment spans.

Every error is a :class:`SloSpecError` (a ``ValueError``) whose message starts
with the path of the bad field, e.g. ``slos[2].objective: must be between 0
and 1 (exclusive), got 1.2``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

SLI_KINDS = ("success", "latency", "freshness", "deployment")
DIMENSIONS = ("model_name", "model_version", "site", "region", "device_class")
# Labels fleetwatch sets on every alert; a spec may not override them.
RESERVED_LABELS = ("alertname", "slo", "severity", *DIMENSIONS)

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_PERIOD = re.compile(r"^(\d+)(m|h|d|w)$")
_PERIOD_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
MIN_PERIOD = timedelta(hours=1)
MAX_PERIOD = timedelta(days=400)
# Freshness counts devices, which have no model: only these dimensions apply to it.
DEVICE_DIMENSIONS = ("site", "region", "device_class")
DEFAULT_KNOWN_FOR = "1d"


class SloSpecError(ValueError):
    """An SLO spec is invalid; the message starts with the path of the bad field."""


def parse_period(value: Any, key: str) -> timedelta:
    """``30d``, ``28d``, ``7d``, ``12h``, ``4w``: a whole number and one unit (m, h, d, w)."""
    period = parse_duration(value, key)
    if not MIN_PERIOD <= period <= MAX_PERIOD:
        raise SloSpecError(f"{key}: must be between 1h and 400d, got {value!r}")
    return period


def parse_duration(value: Any, key: str) -> timedelta:
    """A whole number and one unit (m, h, d, w), more than zero: ``90m``, ``1d``."""
    match = _PERIOD.match(str(value).strip()) if isinstance(value, str) else None
    if not match or int(match.group(1)) == 0:
        raise SloSpecError(f"{key}: expected a period such as 30d, 28d, 7d or 12h, got {value!r}")
    return int(match.group(1)) * _PERIOD_UNITS[match.group(2)]


@dataclass
class SliSpec:
    """What counts as good and what counts at all; see the module docstring for the kinds."""

    kind: str = "success"
    threshold_ms: float | None = None          # latency only
    max_staleness_minutes: float | None = None  # freshness only
    known_for: str | None = None  # freshness only: how long a silent device still counts (default 1d)

    def validate(self, key: str) -> None:
        if self.kind not in SLI_KINDS:
            raise SloSpecError(f"{key}.kind: must be one of {', '.join(SLI_KINDS)}, got {self.kind!r}")
        _only_for(self.threshold_ms, "latency", self.kind, f"{key}.threshold_ms")
        _only_for(self.max_staleness_minutes, "freshness", self.kind, f"{key}.max_staleness_minutes")
        _only_for(self.known_for, "freshness", self.kind, f"{key}.known_for")
        if self.kind == "latency":
            _positive_number(self.threshold_ms, f"{key}.threshold_ms", "a latency in milliseconds such as 250")
        if self.kind == "freshness":
            _positive_number(self.max_staleness_minutes, f"{key}.max_staleness_minutes", "minutes such as 15")
            known_for = parse_duration(self.known_for or DEFAULT_KNOWN_FOR, f"{key}.known_for")
            # A device must stay known longer than it may be silent, or it could never count as stale.
            if known_for.total_seconds() <= self.max_staleness_minutes * 60 or known_for > MAX_PERIOD:
                raise SloSpecError(f"{key}.known_for: must be longer than max_staleness_minutes "
                                   f"({self.max_staleness_minutes:g}m) and at most 400d, got {self.known_for!r}")

    @property
    def threshold_ns(self) -> int | None:
        """The latency threshold as the integer the raw ``duration_ns`` is compared with (``<=``)."""
        return None if self.threshold_ms is None else int(round(self.threshold_ms * 1_000_000))

    @property
    def max_staleness_ns(self) -> int | None:
        """Freshness: the largest receive age, in nanoseconds, that still counts as fresh."""
        return None if self.max_staleness_minutes is None else int(round(self.max_staleness_minutes * 60e9))

    @property
    def known_for_duration(self) -> timedelta:
        """Freshness: how long after its newest telemetry a device still counts in the total."""
        return parse_duration(self.known_for or DEFAULT_KNOWN_FOR, "known_for")


@dataclass
class AlertingOptions:
    """Which severities alert and the low-traffic guard (see docs/slo.md for its trade-off)."""

    page: bool = True
    ticket: bool = True
    # A rule whose long window holds fewer events than this never fires:
    # one failure among three events is a 33 % error ratio, far above any
    # threshold, but not a reason to wake anyone.
    min_events: int = 0
    # A group that reported in the period and has had no event for an hour
    # raises its own ticket (SLONoData): no data is never read as no burn.
    no_data: bool = True

    def validate(self, key: str) -> None:
        for name in ("page", "ticket", "no_data"):
            if not isinstance(getattr(self, name), bool):
                raise SloSpecError(f"{key}.{name}: expected true or false, got {getattr(self, name)!r}")
        if isinstance(self.min_events, bool) or not isinstance(self.min_events, int) or self.min_events < 0:
            raise SloSpecError(f"{key}.min_events: expected a whole number >= 0, got {self.min_events!r}")


@dataclass
class SloSpec:
    """One SLO. Build with :func:`slo_from_dict` (or the file loaders), which validate."""

    name: str = ""
    description: str = ""
    sli: SliSpec = field(default_factory=SliSpec)
    objective: float = 0.0
    period: str = "30d"
    group_by: list[str] = field(default_factory=list)
    filters: dict[str, list[str]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    alerting: AlertingOptions = field(default_factory=AlertingOptions)

    @property
    def period_duration(self) -> timedelta:
        return parse_period(self.period, "period")

    @property
    def error_budget(self) -> float:
        """The share of events allowed to be bad: ``1 - objective``."""
        return 1.0 - self.objective

    def validate(self, key: str = "slo") -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise SloSpecError(f"{key}.name: expected lowercase letters, digits, '-', '_' or '.' "
                               f"(at most 63, starting with a letter or digit), got {self.name!r}")
        if not isinstance(self.description, str):
            raise SloSpecError(f"{key}.description: expected a string, got {self.description!r}")
        self.sli.validate(f"{key}.sli")
        objective = self.objective
        if isinstance(objective, bool) or not isinstance(objective, (int, float)) or not 0 < objective < 1:
            raise SloSpecError(f"{key}.objective: must be between 0 and 1 (exclusive), got {objective!r}")
        parse_period(self.period, f"{key}.period")
        for i, dimension in enumerate(self.group_by):
            if dimension not in DIMENSIONS:
                raise SloSpecError(f"{key}.group_by[{i}]: must be one of {', '.join(DIMENSIONS)}, got {dimension!r}")
        if len(set(self.group_by)) != len(self.group_by):
            raise SloSpecError(f"{key}.group_by: lists a dimension twice: {self.group_by}")
        for dimension, values in self.filters.items():
            if dimension not in DIMENSIONS:
                raise SloSpecError(f"{key}.filters.{dimension}: not a dimension; use one of {', '.join(DIMENSIONS)}")
            if not values:
                raise SloSpecError(f"{key}.filters.{dimension}: give a value or a non-empty list of values")
        if self.sli.kind == "freshness":
            self._validate_device_dimensions(key)
        for name in self.labels:
            if not _LABEL_NAME.match(name):
                raise SloSpecError(f"{key}.labels.{name}: not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*)")
            if name in RESERVED_LABELS:
                raise SloSpecError(f"{key}.labels.{name}: set by fleetwatch on every alert; choose another name")
        for name in ("runbook_url", "dashboard_url"):
            url = self.annotations.get(name)
            if url is not None and not re.match(r"^https?://\S+$", url):
                raise SloSpecError(f"{key}.annotations.{name}: expected an http(s) URL, got {url!r}")
        self.alerting.validate(f"{key}.alerting")

    def _validate_device_dimensions(self, key: str) -> None:
        """Freshness counts devices, not inferences: a device has a site, not a model."""
        allowed = ", ".join(DEVICE_DIMENSIONS)
        for i, dimension in enumerate(self.group_by):
            if dimension not in DEVICE_DIMENSIONS:
                raise SloSpecError(f"{key}.group_by[{i}]: freshness counts devices, so group by {allowed}, "
                                   f"not {dimension}")
        for dimension in self.filters:
            if dimension not in DEVICE_DIMENSIONS:
                raise SloSpecError(f"{key}.filters.{dimension}: freshness counts devices, so filter on {allowed}, "
                                   f"not {dimension}")


def _only_for(value: Any, kind: str, actual: str, key: str) -> None:
    if value is not None and actual != kind:
        raise SloSpecError(f"{key}: only for sli kind {kind}, not {actual}")


def _positive_number(value: Any, key: str, example: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise SloSpecError(f"{key}: expected {example} (more than 0), got {value!r}")


def _mapping(data: Any, key: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise SloSpecError(f"{key}: expected a mapping, got {type(data).__name__}")
    for name in data:
        if name not in allowed:
            raise SloSpecError(f"{key}.{name}: unknown key; expected one of {', '.join(allowed)}")
    return data


def _strings(data: Any, key: str) -> dict[str, str]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SloSpecError(f"{key}: expected a mapping of names to strings")
    for name, value in data.items():
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise SloSpecError(f"{key}.{name}: expected a string, got {value!r}")
    return {str(k): str(v) for k, v in data.items()}


def _filters(data: Any, key: str) -> dict[str, list[str]]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SloSpecError(f"{key}: expected a mapping of dimension to a value or a list of values")
    filters: dict[str, list[str]] = {}
    for dimension, value in data.items():
        values = value if isinstance(value, list) else [value]
        for v in values:
            if not isinstance(v, (str, int, float)) or isinstance(v, bool):
                raise SloSpecError(f"{key}.{dimension}: expected a string or a list of strings, got {value!r}")
        filters[str(dimension)] = [str(v) for v in values]
    return filters


_SLO_KEYS = ("name", "description", "sli", "objective", "period", "group_by", "filters", "labels",
             "annotations", "alerting")


def slo_from_dict(data: Any, key: str = "slo") -> SloSpec:
    """Build and validate one SLO from a parsed YAML mapping; unknown keys are refused by path."""
    data = _mapping(data, key, _SLO_KEYS)
    sli = _mapping(data.get("sli", {}), f"{key}.sli", ("kind", "threshold_ms", "max_staleness_minutes", "known_for"))
    alerting = _mapping(data.get("alerting", {}), f"{key}.alerting", ("page", "ticket", "min_events", "no_data"))
    group_by = data.get("group_by", [])
    if not isinstance(group_by, list):
        raise SloSpecError(f"{key}.group_by: expected a list of dimensions, got {group_by!r}")
    spec = SloSpec(
        name=data.get("name", ""), description=data.get("description", ""), sli=SliSpec(**sli),
        objective=data.get("objective", 0.0), period=data.get("period", "30d"), group_by=group_by,
        filters=_filters(data.get("filters"), f"{key}.filters"), labels=_strings(data.get("labels"), f"{key}.labels"),
        annotations=_strings(data.get("annotations"), f"{key}.annotations"), alerting=AlertingOptions(**alerting))
    spec.validate(key)
    return spec


def slos_from_dict(data: Any) -> list[SloSpec]:
    """Build and validate every SLO of a parsed SLO file (``{"slos": [...]}``); names must be unique."""
    data = _mapping(data, "slo file", ("slos",))
    entries = data.get("slos")
    if not isinstance(entries, list) or not entries:
        raise SloSpecError("slos: expected a non-empty list of SLOs")
    specs: list[SloSpec] = []
    for i, entry in enumerate(entries):
        spec = slo_from_dict(entry, f"slos[{i}]")
        if any(s.name == spec.name for s in specs):
            raise SloSpecError(f"slos[{i}].name: {spec.name!r} is already the name of another SLO")
        specs.append(spec)
    return specs


def load_slo_file(path: str | Path) -> list[SloSpec]:
    """Read an SLO file: fleetwatch's ``slos:`` format, or OpenSLO v1 documents (see :mod:`.openslo`)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SloSpecError(f"cannot read SLO file {str(path)!r}: {exc.strerror}") from exc
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise SloSpecError(f"{path}: not valid YAML: {exc}") from exc
    if any(isinstance(d, dict) and "apiVersion" in d for d in documents):
        from analytics.slo.openslo import (
            slos_from_openslo,  # only files that need it pay for it
        )
        return slos_from_openslo(documents)
    if len(documents) != 1:
        raise SloSpecError(f"{path}: expected one YAML document with a 'slos' list")
    return slos_from_dict(documents[0])
