"""Evaluates every SLO's burn-rate rules at every minute and steps its alerts: one code for live and backtest.

::

    evaluator = SloEvaluator(specs, LifecycleConfig())
    result = evaluator.evaluate(read, start, end, notify_after=now - timedelta(minutes=15))
    result.changed          # alert states that changed (rows of the `alerts` table)
    result.messages         # notifications to deliver now (firing, repeat, resolved)
    result.transitions      # each alert that started firing or resolved, with the burn rates it saw
    result.evaluations      # per instant and group: burn rates, budget, outcomes (slo_evaluations rows)

``read(sql, params)`` reads the SLI tables (``slo_sli_minute``,
``slo_freshness_minute``); :mod:`analytics.slo.windows` sums them over the
rule windows at each minute of ``[start, end)``, the rules of
:mod:`analytics.slo.rules` decide page and ticket conditions for all
instants at once, and the lifecycle of :mod:`analytics.slo.lifecycle` is
stepped only where something can change (a condition holds, or an alert is
pending or firing), which makes a 30-day backtest cost little more than its
arithmetic.

Per SLO and group three alerts: ``SLOBurnRate`` page and ticket (the
page inhibits the ticket) and ``SLONoData`` (ticket severity): the group
reported in the period but has had no event for an hour.

The evaluator holds the alert states and the window sums between calls;
:meth:`SloEvaluator.load_states` restores states from the ``alerts`` table
and :meth:`SloEvaluator.reset_sums` forgets the sums after late data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa

from analytics.slo.lifecycle import (
    FIRING,
    NO_DATA_ALERT_NAME,
    RESOLVED,
    AlertKey,
    AlertState,
    Lifecycle,
    LifecycleConfig,
    group_key,
)
from analytics.slo.payload import AlertContext, AlertMessage, describe
from analytics.slo.rules import (
    FIRING_CODE,
    LOW_TRAFFIC_CODE,
    NO_DATA_CODE,
    OUTCOME_CODES,
    RuleEvaluation,
    SeverityEvaluation,
    alert_windows,
    budgets_remaining,
    burn_rates,
    outcomes_from_burns,
)
from analytics.slo.sli_job import sli_table
from analytics.slo.spec import DIMENSIONS, SloSpec
from analytics.slo.windows import ChunkSums, MinuteRows, Read, WindowSums

SEVERITY_OUTCOMES = ("ok", "firing", "no_data", "low_traffic")
NO_DATA_WINDOW = "1h"  # a group silent this long (having reported in the period) raises SLONoData
PACE_WINDOW = "1h"     # time to exhaustion is at the burn rate of this window
ROLLOUT_LOOKBACK = timedelta(hours=6)


@dataclass(frozen=True)
class Transition:
    """An alert that started firing or resolved: one line of ``fleetwatch slo backtest``."""

    at: datetime
    slo: str
    group: dict[str, str]
    severity: str
    state: str
    alertname: str
    burn_rates: dict[str, float | None]

    def to_json(self) -> dict:
        return {"at": self.at.strftime("%Y-%m-%dT%H:%M:%SZ"), "slo": self.slo, "group": self.group,
                "severity": self.severity, "state": self.state, "alertname": self.alertname,
                "burn_rates": self.burn_rates}


@dataclass
class EvaluationResult:
    """What one :meth:`SloEvaluator.evaluate` call decided; see the module docstring."""

    changed: dict[tuple[str, datetime], AlertState] = field(default_factory=dict)  # (fingerprint, opened) -> state
    dropped: set[tuple[str, datetime]] = field(default_factory=set)  # pending episodes that never fired
    messages: list[AlertMessage] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    evaluations: list[pa.Table] = field(default_factory=list)

    def merge(self, other: EvaluationResult) -> None:
        self.changed.update(other.changed)
        self.dropped |= other.dropped
        self.messages += other.messages
        self.transitions += other.transitions
        self.evaluations += other.evaluations

    def evaluation_table(self) -> pa.Table | None:
        return pa.concat_tables(self.evaluations) if self.evaluations else None


def _outcome_names(codes: list[np.ndarray], long_totals: list[np.ndarray]) -> np.ndarray:
    """A severity's outcome per cell: firing if any rule fires, low traffic, no data when every long window is empty."""
    stacked = np.stack(codes)
    out = np.zeros(stacked.shape[1:], dtype=np.int8)  # ok
    out[np.all(np.stack(long_totals) == 0, axis=0)] = NO_DATA_CODE
    out[np.any(stacked == LOW_TRAFFIC_CODE, axis=0)] = LOW_TRAFFIC_CODE
    out[np.any(stacked == FIRING_CODE, axis=0)] = FIRING_CODE
    return out


class _SloState:
    """One SLO's window sums, rules and alert states."""

    def __init__(self, spec: SloSpec) -> None:
        self.spec = spec
        self.sums = WindowSums(spec, sli_table(spec))
        self.rules = alert_windows(spec.period_duration)
        self.alerts: dict[tuple[str, str], AlertState] = {}  # (group_key, alertname/severity) -> state

    def key(self, group: dict[str, str], severity: str, alertname: str | None = None) -> AlertKey:
        if alertname is None:
            return AlertKey.of(self.spec.name, severity, group, self.spec.labels)
        return AlertKey.of(self.spec.name, severity, group, self.spec.labels, alertname)


class SloEvaluator:
    """Evaluates SLOs chunk by chunk; see the module docstring."""

    def __init__(self, specs: Sequence[SloSpec], lifecycle: LifecycleConfig | None = None,
                 rollouts: bool = True) -> None:
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"slo names must be unique: {names}")
        self.lifecycle = Lifecycle(lifecycle)
        self.slos = {spec.name: _SloState(spec) for spec in specs}
        self.rollouts = rollouts
        self.max_chunk = min((s.sums.max_chunk for s in self.slos.values()), default=timedelta(days=1))
        self.max_chunk = min(self.max_chunk, timedelta(days=1))

    # -- state -----------------------------------------------------------
    def load_states(self, rows: list[dict]) -> None:
        """Alert states from ``alerts`` rows (the newest episode of each fingerprint wins)."""
        for row in sorted(rows, key=lambda r: r["opened_at"]):
            slo = self.slos.get(row["slo"])
            if slo is None:
                continue  # an SLO no longer in the file: its history stays, it is not evaluated
            state = AlertState.from_row(row)
            slo.alerts[(group_key(dict(state.key.group)), _slot(state.key))] = state

    def reset_sums(self) -> None:
        for slo in self.slos.values():
            slo.sums.invalidate()

    def reset(self) -> None:
        """Forget everything held (after a failed write: the file is the truth)."""
        self.reset_sums()
        for slo in self.slos.values():
            slo.alerts.clear()

    # -- evaluation ------------------------------------------------------
    def evaluate(self, read: Read, start: datetime, end: datetime, *, notify_after: datetime | None = None,
                 keep_evaluations: Callable[[datetime], bool] | None = None) -> EvaluationResult:
        """Evaluate the instants ``start + 1m .. end``.

        Firing is announced only for instants at or after ``notify_after``
        (None: never, as in a backtest); ``keep_evaluations(instant)`` says
        which instants' burn rates go to ``slo_evaluations`` (None: none).
        """
        result = EvaluationResult()
        tables: dict[str, list[str]] = {}
        for slo in self.slos.values():
            tables.setdefault(slo.sums.table, []).append(slo.spec.name)
        sources = {table: MinuteRows(read, table, names) for table, names in tables.items()}
        for slo in self.slos.values():
            chunk = slo.sums.advance(sources[slo.sums.table], start, end)
            self._evaluate_slo(read, slo, chunk, result, notify_after, keep_evaluations)
        return result

    def _evaluate_slo(self, read: Read, slo: _SloState, chunk: ChunkSums, result: EvaluationResult,
                      notify_after: datetime | None, keep: Callable[[datetime], bool] | None) -> None:
        spec = slo.spec
        objective = spec.objective
        # Burn rates of the rule windows at every cell; the period's only where they are kept or sent.
        burns = {name: burn_rates(chunk.good[name], chunk.total[name], objective)
                 for name in chunk.good if name != "period"}
        names = {w: n for n, w in slo.sums.windows.items()}
        codes: dict[str, dict] = {}
        outcomes: dict[str, np.ndarray] = {}
        for severity in ("page", "ticket"):
            rules = slo.rules.for_severity(severity)
            per_rule = [rule_codes(rule, chunk, names, burns, spec.alerting.min_events) for rule in rules]
            codes[severity] = dict(zip(rules, per_rule))
            outcomes[severity] = _outcome_names(per_rule, [chunk.total[names[r.long_window]] for r in rules])
        conditions = {severity: _conditions(outcomes[severity]) if getattr(spec.alerting, severity) else None
                      for severity in ("page", "ticket")}
        no_data = None
        if spec.alerting.no_data:
            no_data = np.where(chunk.total["period"] == 0, 0, (chunk.total[NO_DATA_WINDOW] == 0).astype(np.int8))
        if keep is not None:
            self._keep_evaluations(slo, chunk, burns, outcomes, keep, result)
        for g, group in enumerate(chunk.groups):
            self._step_group(read, slo, chunk, g, group, conditions, no_data, codes, burns, notify_after, result)

    @staticmethod
    def _budget(slo: _SloState, chunk: ChunkSums, burns: dict[str, np.ndarray], cells) -> tuple:
        """Period burn rate, budget left and seconds to exhaustion at ``cells`` (an index into the chunk's arrays)."""
        spec = slo.spec
        period_burn = burn_rates(chunk.good["period"][cells], chunk.total["period"][cells], spec.objective)
        remaining = budgets_remaining(chunk.good["period"][cells], chunk.total["period"][cells], spec.objective)
        pace = burns[PACE_WINDOW][cells]
        with np.errstate(divide="ignore", invalid="ignore"):
            exhaustion = np.where(remaining <= 0, 0.0, remaining * spec.period_duration.total_seconds() / pace)
        exhaustion = np.where(np.isnan(remaining) | ~(pace > 0), np.nan, exhaustion)
        return period_burn, remaining, exhaustion

    def _step_group(self, read, slo, chunk, g, group, conditions, no_data, codes, burns, notify_after,
                    result) -> None:
        group_key = chunk.group_keys[g]
        slots = {"page": slo.key(group, "page"), "ticket": slo.key(group, "ticket"),
                 "no_data": slo.key(group, "ticket", NO_DATA_ALERT_NAME)}
        states = {name: slo.alerts.get((group_key, name)) or AlertState.new(key) for name, key in slots.items()}
        rows = {name: (conditions[name][g] if name in conditions and conditions[name] is not None else None)
                for name in ("page", "ticket")}
        rows["no_data"] = no_data[g] if no_data is not None else None
        # Instants where a condition holds; between them only an active alert needs stepping.
        any_true = np.zeros(len(chunk.instants), dtype=bool)
        for row in rows.values():
            if row is not None:
                any_true |= row == 1
        candidates = np.flatnonzero(any_true)
        i = int(candidates[0]) if len(candidates) else None
        if any(s.state in ("pending", FIRING) for s in states.values()):
            i = 0
        while i is not None and i < len(chunk.instants):
            at = chunk.instants[i]
            notify = notify_after is not None and at >= notify_after
            cond = {name: (None if row is None or row[i] < 0 else bool(row[i])) for name, row in rows.items()}
            before = dict(states)
            step = self.lifecycle.step_group(states["page"], states["ticket"], cond["page"], cond["ticket"], at,
                                             notify=notify)
            states["page"], states["ticket"] = step.page, step.ticket
            notes = list(step.notifications)
            states["no_data"], note = self.lifecycle.step(states["no_data"], cond["no_data"], at, notify=notify)
            if note is not None:
                notes.append(note)
            for name, state in states.items():
                key = (state.key.fingerprint, state.opened_at)
                if state.state != "inactive":
                    result.changed[key] = state
                elif before[name].state == "pending":
                    result.changed.pop(key, None)
                    result.dropped.add(key)
                if state.state != before[name].state and state.state in (FIRING, RESOLVED):
                    period_burn = self._budget(slo, chunk, burns, (g, i))[0]
                    result.transitions.append(Transition(
                        at, slo.spec.name, dict(group), state.key.severity, state.state, state.key.alertname,
                        {**{n: _number(b[g, i]) for n, b in burns.items()}, "period": _number(period_burn)}))
            for note in notes:
                result.messages.append(self._message(read, slo, chunk, note.alert, codes, burns, g, i, at))
            if any(s.state in ("pending", FIRING) for s in states.values()):
                i += 1
            else:
                later = candidates[candidates > i]
                i = int(later[0]) if len(later) else None
        for name, state in states.items():
            slo.alerts[(group_key, name)] = state

    # -- outputs ---------------------------------------------------------
    def _message(self, read, slo: _SloState, chunk: ChunkSums, alert: AlertState, codes, burns,
                 g: int, i: int, at: datetime) -> AlertMessage:
        spec = slo.spec
        if alert.key.alertname == NO_DATA_ALERT_NAME:
            annotations = {**{k: v for k, v in spec.annotations.items()},
                           "summary": f"{spec.description or spec.name}: no events from this group "
                                      f"for {NO_DATA_WINDOW} (it reported within the {spec.period})",
                           "description": "No data is never read as no burn: the burn-rate alerts of this "
                                          "group cannot fire while it is silent."}
            return AlertMessage(alert, annotations)
        severity = alert.key.severity
        evaluations = tuple(
            RuleEvaluation(rule, OUTCOME_CODES[int(rule_codes_at[g, i])],
                           _number(burns[_name(slo, rule.long_window)][g, i]),
                           _number(burns[_name(slo, rule.short_window)][g, i]), 0)
            for rule, rule_codes_at in codes[severity].items())
        _, remaining, exhaustion = self._budget(slo, chunk, burns, (g, i))
        rollout = ""
        if self.rollouts and alert.state == FIRING:
            rollout = rollouts_in_group(read, spec, dict(alert.key.group), at)
        context = AlertContext(
            slo_description=spec.description or spec.name, objective=spec.objective, period=spec.period_duration,
            evaluation=SeverityEvaluation(severity, evaluations), budget_remaining=_number(remaining),
            time_to_exhaustion=None if math.isnan(exhaustion) else timedelta(seconds=float(exhaustion)),
            runbook_url=spec.annotations.get("runbook_url", ""), rollout=rollout,
            extra={k: v for k, v in spec.annotations.items() if k != "runbook_url"})
        return AlertMessage(alert, describe(context))

    def _keep_evaluations(self, slo, chunk, burns, outcomes, keep, result) -> None:
        kept = np.array([keep(t) for t in chunk.instants], dtype=bool)
        if not kept.any() or not chunk.groups:
            return
        g_idx, i_idx = np.nonzero((chunk.total["period"] > 0) & kept[None, :])
        if not len(g_idx):
            return
        cells = (g_idx, i_idx)
        period_burn, remaining, exhaustion = self._budget(slo, chunk, burns, cells)
        instants = np.array(chunk.instants, dtype="datetime64[us]")

        def strings(indices: np.ndarray, values: list) -> pa.Array:
            # Dictionary-encoded (DuckDB decodes it on insert): no Python object, no string copy per row.
            return pa.DictionaryArray.from_arrays(pa.array(indices.astype(np.int32)), pa.array(values, pa.string()))

        columns: dict[str, pa.Array] = {
            "evaluated_at": pa.array(instants[i_idx]),
            "slo": strings(np.zeros(len(g_idx)), [slo.spec.name]),
            "group_key": strings(g_idx, chunk.group_keys),
        }
        for dim in DIMENSIONS:
            columns[dim] = strings(g_idx, [group.get(dim) for group in chunk.groups])
        for name, values in {**burns, "period": None}.items():
            picked = period_burn if values is None else values[cells]
            columns[f"burn_{name}"] = pa.array(picked, mask=np.isnan(picked))
        columns["good_period"] = pa.array(chunk.good["period"][cells], pa.uint64())
        columns["total_period"] = pa.array(chunk.total["period"][cells], pa.uint64())
        columns["budget_remaining"] = pa.array(remaining, mask=np.isnan(remaining))
        columns["exhaustion_seconds"] = pa.array(exhaustion, mask=np.isnan(exhaustion))
        for severity, values in outcomes.items():
            columns[severity] = strings(values[cells], list(SEVERITY_OUTCOMES))
        result.evaluations.append(pa.table(columns))


def rule_codes(rule, chunk: ChunkSums, names: dict[timedelta, str], burns: dict[str, np.ndarray],
               min_events: int) -> np.ndarray:
    """The outcome codes of one rule for every group and instant of a chunk.

    Until a group's history covers the rule's short window the rule has no
    data: half an hour of a new group's events is not a 6-hour window, and
    a 3-day rule reading it would open tickets on the noise of its first
    minutes.
    """
    long, short = names[rule.long_window], names[rule.short_window]
    codes = outcomes_from_burns(rule, burns[long], burns[short], chunk.total[long], min_events)
    codes[chunk.history < rule.short_window / timedelta(minutes=1)] = NO_DATA_CODE
    return codes


def _conditions(outcome: np.ndarray) -> np.ndarray:
    """Lifecycle conditions from severity outcomes: 1 burning, 0 not, -1 no data (hold)."""
    cond = np.zeros(outcome.shape, dtype=np.int8)
    cond[outcome == FIRING_CODE] = 1
    cond[outcome == NO_DATA_CODE] = -1
    return cond


def _name(slo: _SloState, window: timedelta) -> str:
    return next(n for n, w in slo.sums.windows.items() if w == window)


def _number(value) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


def _slot(key: AlertKey) -> str:
    return "no_data" if key.alertname == NO_DATA_ALERT_NAME else key.severity


def rollouts_in_group(read: Read, spec: SloSpec, group: dict[str, str], at: datetime) -> str:
    """The rollouts that deployed to the group's devices in the hours before ``at`` (comma-separated, busiest first)."""
    events = "name = 'inference'" if spec.sli.kind != "freshness" else "name IS NOT NULL"
    match = " AND ".join(f"{dim} = ${dim}" for dim in sorted(group))
    rows = read(
        "SELECT json_extract_string(attributes, '$.\"deployment.rollout.id\"') AS rollout, "
        "count(DISTINCT device_id) AS devices FROM span_rows "
        "WHERE name = 'deployment' AND start_time >= $since AND start_time < $at AND device_id IN ("
        f"  SELECT DISTINCT device_id FROM span_rows WHERE {events} AND start_time >= $since AND start_time < $at"
        f"  {'AND ' + match if match else ''}) "
        "GROUP BY ALL HAVING rollout IS NOT NULL ORDER BY devices DESC, rollout",
        {"since": at - ROLLOUT_LOOKBACK, "at": at, **group})
    return ", ".join(rows["rollout"].to_pylist())


def step_provider_alert(lifecycle: Lifecycle, state: AlertState, condition: bool | None, at: datetime,
                        notify_after: datetime | None, result: EvaluationResult,
                        timed: list[tuple[datetime, str, AlertMessage]],
                        annotate: Callable[[], dict[str, str]]) -> AlertState:
    """One lifecycle step of an alert outside the SLOs (zero-tolerance, drift), recorded in ``result``.

    Messages go to ``timed`` (instant, fingerprint, message) so that
    :func:`finish_provider_result` can put them in time order.
    """
    before = state
    state, note = lifecycle.step(state, condition, at, notify=notify_after is not None and at >= notify_after)
    result.changed[(state.key.fingerprint, state.opened_at)] = state
    if state.state != before.state and state.state in (FIRING, RESOLVED):
        result.transitions.append(Transition(at, state.key.slo, dict(state.key.group), state.key.severity,
                                             state.state, state.key.alertname, {}))
    if note is not None:
        timed.append((at, state.key.fingerprint, AlertMessage(note.alert, annotate())))
    return state


def finish_provider_result(result: EvaluationResult, timed: list[tuple[datetime, str, AlertMessage]]) -> None:
    """Transitions and messages of a provider's evaluation in time order."""
    result.transitions.sort(key=lambda t: t.at)
    result.messages = [message for _, _, message in sorted(timed, key=lambda m: m[:2])]
