"""Import ratio SLOs written in OpenSLO v1 into fleetwatch's :class:`SloSpec`.

What maps::

    apiVersion: openslo/v1
    kind: SLO
    metadata: {name: detector-success, displayName: ..., labels: {team: vision}, annotations: {...}}
    spec:
      description: Detector inferences succeed
      budgetingMethod: Occurrences            # the only method fleetwatch budgets with
      timeWindow: [{duration: 28d, isRolling: true}]
      indicator:                              # inline, or indicatorRef to a kind: SLI document
        metadata: {name: detector-success-sli}
        spec:
          ratioMetric:
            counter: true
            good:  {metricSource: {type: fleetwatch, spec: {kind: success, filters: {model_name: detector}}}}
            total: {metricSource: {type: fleetwatch, spec: {kind: success, filters: {model_name: detector}}}}
      objectives: [{displayName: ..., target: 0.995}]

    specs = slos_from_openslo(list(yaml.safe_load_all(text)))

fleetwatch evaluates its SLIs from its own tables, so a metric source must
be ``type: fleetwatch`` whose ``spec`` names the SLI kind (and its options:
``threshold_ms``, ``max_staleness_minutes``, ``known_for``, ``filters``, ``group_by``);
``good`` and ``total`` (or ``bad`` and ``total``) must describe the same
events. What has no fleetwatch meaning is refused with the field's path:
Prometheus or other vendor queries, threshold (non-ratio) SLIs, calendar
windows, time-slice budgeting, several objectives, alert policies (fleetwatch
applies its own multi-window burn-rate rules). ``Service`` documents are
accepted and their name becomes the ``service`` label.
"""

from __future__ import annotations

from typing import Any

from analytics.slo.spec import SloSpec, SloSpecError, slo_from_dict

API_VERSION = "openslo/v1"
_SOURCE_KEYS = ("kind", "threshold_ms", "max_staleness_minutes", "known_for", "filters", "group_by")


def slos_from_openslo(documents: list[Any]) -> list[SloSpec]:
    """Every ``kind: SLO`` document as a validated :class:`SloSpec`; ``kind: SLI`` ones resolve ``indicatorRef``."""
    slis: dict[str, dict] = {}
    slo_docs: list[tuple[int, dict]] = []
    for i, doc in enumerate(documents):
        key = f"document[{i}]"
        if not isinstance(doc, dict):
            raise SloSpecError(f"{key}: expected a mapping")
        if doc.get("apiVersion") != API_VERSION:
            raise SloSpecError(f"{key}.apiVersion: only {API_VERSION} can be imported, got {doc.get('apiVersion')!r}")
        kind = doc.get("kind")
        if kind == "SLI":
            slis[_name(doc, key)] = doc
        elif kind == "SLO":
            slo_docs.append((i, doc))
        elif kind != "Service":
            raise SloSpecError(f"{key}.kind: {kind!r} has no fleetwatch meaning; import SLO, SLI and Service "
                               "documents only (fleetwatch applies its own burn-rate alerts)")
    if not slo_docs:
        raise SloSpecError("no document of kind SLO to import")
    specs = [slo_from_openslo(doc, slis, f"document[{i}]") for i, doc in slo_docs]
    names = [s.name for s in specs]
    for (i, _), name in zip(slo_docs, names):
        if names.count(name) > 1:
            raise SloSpecError(f"document[{i}].metadata.name: {name!r} names two SLOs")
    return specs


def slo_from_openslo(doc: dict, slis: dict[str, dict] | None = None, key: str = "document") -> SloSpec:
    """One OpenSLO v1 ``kind: SLO`` document as a validated :class:`SloSpec`."""
    name = _name(doc, key)
    metadata = doc.get("metadata") or {}
    spec = _field(doc, "spec", dict, key)
    key = f"{key}.spec"
    method = spec.get("budgetingMethod", "Occurrences")
    if method != "Occurrences":
        raise SloSpecError(f"{key}.budgetingMethod: fleetwatch budgets by Occurrences (event counts), not {method!r}")
    if spec.get("alertPolicies"):
        raise SloSpecError(f"{key}.alertPolicies: not imported; fleetwatch applies its multi-window burn-rate "
                           "rules (docs/slo.md) - remove them or set alerting options in fleetwatch")
    period = _time_window(spec, key)
    objectives = _field(spec, "objectives", list, key)
    if len(objectives) != 1 or not isinstance(objectives[0], dict):
        raise SloSpecError(f"{key}.objectives: fleetwatch takes exactly one objective, got {len(objectives)}")
    objective = objectives[0]
    if "target" in objective:
        target = objective["target"]
    elif "targetPercent" in objective:
        target = objective["targetPercent"] / 100 if isinstance(objective["targetPercent"], (int, float)) else None
    else:
        raise SloSpecError(f"{key}.objectives[0].target: missing (a ratio such as 0.995)")
    if objective.get("op") or objective.get("value") is not None:
        raise SloSpecError(f"{key}.objectives[0]: threshold objectives (op/value) have no fleetwatch meaning; "
                           "use a ratioMetric indicator and target")
    source = _indicator_source(spec, slis or {}, key)
    labels = {k: (",".join(map(str, v)) if isinstance(v, list) else v)
              for k, v in (metadata.get("labels") or {}).items()}
    if spec.get("service"):
        labels["service"] = spec["service"]
    data = {"name": name, "description": spec.get("description") or metadata.get("displayName") or "",
            "sli": {k: source[k] for k in _SOURCE_KEYS[:4] if k in source},
            "objective": target, "period": period, "group_by": source.get("group_by", []),
            "filters": source.get("filters"), "labels": labels, "annotations": metadata.get("annotations")}
    return slo_from_dict(data, f"{key} ({name})")


def _name(doc: dict, key: str) -> str:
    metadata = _field(doc, "metadata", dict, key)
    return _field(metadata, "name", str, f"{key}.metadata")


def _field(data: dict, name: str, kind: type, key: str) -> Any:
    value = data.get(name)
    if not isinstance(value, kind):
        raise SloSpecError(f"{key}.{name}: expected a {kind.__name__}, got {value!r}")
    return value


def _time_window(spec: dict, key: str) -> str:
    windows = spec.get("timeWindow")
    if windows is None:
        return "30d"
    if not isinstance(windows, list) or len(windows) != 1 or not isinstance(windows[0], dict):
        raise SloSpecError(f"{key}.timeWindow: expected one time window")
    window = windows[0]
    if window.get("isRolling") is not True or "calendar" in window:
        raise SloSpecError(f"{key}.timeWindow[0]: fleetwatch budgets over rolling windows only "
                           "(isRolling: true, no calendar)")
    return _field(window, "duration", str, f"{key}.timeWindow[0]")


def _indicator_source(spec: dict, slis: dict[str, dict], key: str) -> dict:
    if "indicatorRef" in spec:
        ref = spec["indicatorRef"]
        if ref not in slis:
            raise SloSpecError(f"{key}.indicatorRef: no kind: SLI document named {ref!r} in the file")
        indicator, key = slis[ref], f"SLI {ref}"
    else:
        indicator, key = _field(spec, "indicator", dict, key), f"{key}.indicator"
    sli_spec = _field(indicator, "spec", dict, key)
    key = f"{key}.spec"
    if "thresholdMetric" in sli_spec:
        raise SloSpecError(f"{key}.thresholdMetric: threshold SLIs have no fleetwatch meaning; use ratioMetric")
    ratio = _field(sli_spec, "ratioMetric", dict, key)
    key = f"{key}.ratioMetric"
    if "raw" in ratio:
        raise SloSpecError(f"{key}.raw: a precomputed ratio cannot be budgeted by event counts; use good/total")
    numerator = "good" if "good" in ratio else "bad"
    sources = [_metric_source(ratio, part, f"{key}.{part}") for part in (numerator, "total")]
    if sources[0] != sources[1]:
        raise SloSpecError(f"{key}: {numerator} and total must describe the same fleetwatch events "
                           f"(same kind, options and filters); got {sources[0]} and {sources[1]}")
    return sources[0]


def _metric_source(ratio: dict, part: str, key: str) -> dict:
    metric = _field(ratio, part, dict, key.rsplit(".", 1)[0])
    source = _field(metric, "metricSource", dict, key)
    key = f"{key}.metricSource"
    if source.get("type") != "fleetwatch":
        raise SloSpecError(f"{key}.type: {source.get('type')!r} queries cannot be evaluated by fleetwatch; "
                           "use type: fleetwatch with spec.kind (success, latency, freshness or deployment)")
    body = _field(source, "spec", dict, key)
    for name in body:
        if name not in _SOURCE_KEYS:
            raise SloSpecError(f"{key}.spec.{name}: unknown key; expected one of {', '.join(_SOURCE_KEYS)}")
    return body
