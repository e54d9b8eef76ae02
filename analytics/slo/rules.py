"""Multi-window multi-burn-rate alert rules and the error-budget arithmetic, as pure functions.

The rules are the SRE Workbook's ("Alerting on SLOs", recommended
parameters) as Sloth states them: each rule is a share of the error budget
spent over a long window, confirmed by a short window so that the alert
resets soon after recovery::

    windows = alert_windows(timedelta(days=30))
    [(r.severity, r.long_window, r.short_window, round(r.factor, 2)) for r in windows.rules]
    # page 1h/5m 14.4, page 6h/30m 6.0, ticket 1d/2h 3.0, ticket 3d/6h 1.0

    counts = {w: WindowCounts(good, total) for w, (good, total) in ...}   # per window, from the SLI job
    evaluate_rule(windows.rules[0], objective=0.999, long=counts[hour], short=counts[five_min], min_events=100)

Arithmetic (all from event counts; a ratio is never averaged):

- error ratio = (total - good) / total; burn rate = error ratio / (1 - objective);
- budget remaining over the period = 1 - bad / ((1 - objective) x total);
- a burn rate b held for a duration d spends b x d / period of the budget,
  so the remaining share r lasts r x period / b.

A zero denominator is **no data**, never "no burn": :func:`burn_rate` returns
``None`` and :func:`evaluate_rule` answers ``NO_DATA``.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from datetime import timedelta

import numpy as np

SEVERITIES = ("page", "ticket")


@dataclass(frozen=True)
class BurnRateRule:
    """Fire when ``budget_share`` of the period's budget is being spent over ``long_window`` (and ``short_window``)."""

    severity: str
    speed: str           # "quick" or "slow", Sloth's names
    budget_share: float  # 0.02 = 2 % of the period's error budget
    long_window: timedelta
    short_window: timedelta
    period: timedelta

    @property
    def factor(self) -> float:
        """The burn rate that spends ``budget_share`` of the budget in ``long_window``: share x period / window.

        Sloth's getBurnRateFactor (internal/alert/window.go) computes the
        same: hours to spend the share at burn 1, divided by the window.
        """
        return self.budget_share * (self.period / self.long_window)


@dataclass(frozen=True)
class AlertWindows:
    """The four rules of one SLO period, page quick and slow then ticket quick and slow."""

    period: timedelta
    rules: tuple[BurnRateRule, ...]

    def for_severity(self, severity: str) -> tuple[BurnRateRule, ...]:
        return tuple(r for r in self.rules if r.severity == severity)

    @property
    def windows(self) -> tuple[timedelta, ...]:
        """Every window the rules read, shortest first (what the SLI job must sum)."""
        return tuple(sorted({w for r in self.rules for w in (r.long_window, r.short_window)}))


_M, _H, _D = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
# (severity, speed, long window, short window): the same for every period in
# Sloth's published specs; only the budget shares differ.
_RULE_WINDOWS = (("page", "quick", _H, 5 * _M), ("page", "slow", 6 * _H, 30 * _M),
                 ("ticket", "quick", _D, 2 * _H), ("ticket", "slow", 3 * _D, 6 * _H))
# Budget shares (page quick, page slow, ticket quick, ticket slow) per period,
# from Sloth's AlertWindows specs (github.com/slok/sloth):
#   internal/alert/windows/google-30d.yaml and google-28d.yaml: 2, 5, 10, 10 %
#     (the Workbook's numbers; 28d keeps the shares, so the factors shrink to 13.44, 5.6, 2.8, 0.93);
#   examples/windows/7d.yaml: 8, 12.5, 20, 42 % (factors 13.44, 3.5, 1.4, 0.98).
SLOTH_BUDGET_SHARES: dict[timedelta, tuple[float, float, float, float]] = {
    30 * _D: (0.02, 0.05, 0.10, 0.10),
    28 * _D: (0.02, 0.05, 0.10, 0.10),
    7 * _D: (0.08, 0.125, 0.20, 0.42),
}
# The Workbook's factors for its 30-day period; other periods keep these speeds.
WORKBOOK_FACTORS = (14.4, 6.0, 3.0, 1.0)


def alert_windows(period: timedelta) -> AlertWindows:
    """The rules for an SLO period: Sloth's spec when it publishes one, else the Workbook's speeds.

    Sloth refuses a period it has no windows spec for. fleetwatch instead
    keeps the 30-day factors (14.4, 6, 3, 1) and Sloth's windows, so an
    outage of a given severity is detected as fast as under a 30-day SLO;
    the share of the budget each rule stands for is then factor x window /
    period. A period whose shares would exceed the whole budget (shorter
    than about 3 days) is refused.
    """
    shares = SLOTH_BUDGET_SHARES.get(period)
    if shares is None:
        shares = tuple(f * (long / period) for f, (_, _, long, _) in zip(WORKBOOK_FACTORS, _RULE_WINDOWS))
        if max(shares) > 1 or period <= _RULE_WINDOWS[-1][2]:
            raise ValueError(f"period {period}: too short for multi-window burn-rate rules "
                             f"(the slowest rule reads a {_RULE_WINDOWS[-1][2].days}-day window)")
    rules = tuple(BurnRateRule(severity, speed, share, long, short, period)
                  for share, (severity, speed, long, short) in zip(shares, _RULE_WINDOWS))
    return AlertWindows(period, rules)


_SLOTH_DURATION = {"m": _M, "h": _H, "d": _D, "w": 7 * _D}


def _sloth_duration(value: object, key: str) -> timedelta:
    text = str(value).strip()
    if len(text) < 2 or text[-1] not in _SLOTH_DURATION or not text[:-1].isdigit() or int(text[:-1]) == 0:
        raise ValueError(f"{key}: expected a duration such as 5m, 6h or 3d, got {value!r}")
    return int(text[:-1]) * _SLOTH_DURATION[text[-1]]


def sloth_alert_windows(doc: dict) -> AlertWindows:
    """Rules from a Sloth AlertWindows spec (``version: alertWindows/v1`` or ``kind: AlertWindows``).

    Sloth users keep custom period catalogs in this format; the factor is
    computed from the share as Sloth computes it (see :attr:`BurnRateRule.factor`).
    """
    body = doc.get("spec", doc) if isinstance(doc, dict) else None
    if not isinstance(body, dict):
        raise ValueError("alert windows: expected a Sloth AlertWindows mapping")
    period = _sloth_duration(body.get("sloPeriod"), "sloPeriod")
    rules = []
    for severity, speed, _, _ in _RULE_WINDOWS:
        key = f"{severity}.{speed}"
        window = (body.get(severity) or {}).get(speed)
        if not isinstance(window, dict):
            raise ValueError(f"{key}: missing")
        share = window.get("errorBudgetPercent")
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 100:
            raise ValueError(f"{key}.errorBudgetPercent: expected a percentage in (0, 100], got {share!r}")
        long, short = (_sloth_duration(window.get(k), f"{key}.{k}") for k in ("longWindow", "shortWindow"))
        if not short < long <= period:
            raise ValueError(f"{key}: need shortWindow < longWindow <= sloPeriod")
        rules.append(BurnRateRule(severity, speed, share / 100, long, short, period))
    return AlertWindows(period, tuple(rules))


@dataclass(frozen=True)
class WindowCounts:
    """Good and total events of one SLI over one window (sums of per-minute counts)."""

    good: int
    total: int

    def __post_init__(self) -> None:
        if self.total < 0 or not 0 <= self.good <= self.total:
            raise ValueError(f"window counts: need 0 <= good <= total, got good={self.good} total={self.total}")

    @property
    def bad(self) -> int:
        return self.total - self.good


def error_ratio(good: int, total: int) -> float | None:
    """Share of bad events; ``None`` when there were no events (no data is not zero errors)."""
    return None if total == 0 else (total - good) / total


def burn_rate(good: int, total: int, objective: float) -> float | None:
    """How many times faster than sustainable the budget is spent: error ratio / (1 - objective)."""
    value = float(burn_rates(np.array([good]), np.array([total]), objective)[0])
    return None if math.isnan(value) else value


def budget_remaining(good: int, total: int, objective: float) -> float | None:
    """Share of the period's error budget left, from the period's event counts (negative when overspent).

    The budget is ``(1 - objective) x total`` bad events; summing counts
    first is what keeps a busy hour and a quiet hour weighted by their
    traffic, which averaging per-window ratios would not.
    """
    value = float(budgets_remaining(np.array([good]), np.array([total]), objective)[0])
    return None if math.isnan(value) else value


def budgets_remaining(good: np.ndarray, total: np.ndarray, objective: float) -> np.ndarray:
    """:func:`budget_remaining` over arrays of period counts; NaN where there were no events."""
    good, total = np.asarray(good, dtype=np.float64), np.asarray(total, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        left = 1.0 - (total - good) / ((1.0 - objective) * total)
    return np.where(total > 0, left, np.nan)


def budget_spent(rate: float, duration: timedelta, period: timedelta) -> float:
    """Share of a period's budget that burn rate ``rate`` spends in ``duration``."""
    return rate * (duration / period)


def time_to_exhaustion(remaining: float | None, rate: float | None, period: timedelta) -> timedelta | None:
    """How long the remaining budget lasts at burn rate ``rate``; ``None`` when it never runs out or is unknown."""
    if remaining is None or rate is None or rate <= 0:
        return None
    if remaining <= 0:
        return timedelta(0)
    return period * (remaining / rate)


class Outcome(enum.Enum):
    FIRING = "firing"            # both windows burn faster than the factor
    OK = "ok"                    # data, and no burn at the factor
    NO_DATA = "no_data"          # a window has no events: nothing can be said
    LOW_TRAFFIC = "low_traffic"  # burning, but the long window holds fewer than min_events events


@dataclass(frozen=True)
class RuleEvaluation:
    """One rule at one instant: the outcome and the burn rates it saw (``None`` = no data)."""

    rule: BurnRateRule
    outcome: Outcome
    long_burn: float | None
    short_burn: float | None
    long_total: int

    @property
    def firing(self) -> bool:
        return self.outcome is Outcome.FIRING


OUTCOME_CODES = (Outcome.OK, Outcome.FIRING, Outcome.NO_DATA, Outcome.LOW_TRAFFIC)  # index = code
OK_CODE, FIRING_CODE, NO_DATA_CODE, LOW_TRAFFIC_CODE = range(4)


def burn_rates(good: np.ndarray, total: np.ndarray, objective: float) -> np.ndarray:
    """:func:`burn_rate` over arrays of counts; NaN where ``total`` is 0 (no data)."""
    good, total = np.asarray(good, dtype=np.float64), np.asarray(total, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        rates = (total - good) / total / (1.0 - objective)
    return np.where(total > 0, rates, np.nan)


def rule_outcomes(rule: BurnRateRule, objective: float, long_good: np.ndarray, long_total: np.ndarray,
                  short_good: np.ndarray, short_total: np.ndarray, min_events: int = 0) -> np.ndarray:
    """The outcome code (index into :data:`OUTCOME_CODES`) of ``rule`` at many instants at once.

    The one implementation of the rule: :func:`evaluate_rule` calls it for
    one instant; the live evaluator and the backtest for every minute of a
    range. Both windows must burn strictly faster than ``rule.factor``
    (Sloth's ``>``); an empty window is no data; a burning rule whose long
    window holds fewer than ``min_events`` events is low traffic.
    """
    return outcomes_from_burns(rule, burn_rates(long_good, long_total, objective),
                               burn_rates(short_good, short_total, objective), long_total, min_events)


def outcomes_from_burns(rule: BurnRateRule, long_burn: np.ndarray, short_burn: np.ndarray,
                        long_total: np.ndarray, min_events: int = 0) -> np.ndarray:
    """:func:`rule_outcomes` from burn rates already computed (NaN: no data), for callers that share them."""
    no_data = np.isnan(long_burn) | np.isnan(short_burn)
    # NaN compares false, so an empty window never burns.
    burning = (long_burn > rule.factor) & (short_burn > rule.factor)
    codes = np.where(no_data, np.int8(NO_DATA_CODE), np.int8(OK_CODE))
    codes[burning] = FIRING_CODE
    if min_events:
        codes[burning & (np.asarray(long_total) < min_events)] = LOW_TRAFFIC_CODE
    return codes


def evaluate_rule(rule: BurnRateRule, objective: float, long: WindowCounts, short: WindowCounts,
                  min_events: int = 0) -> RuleEvaluation:
    """One rule at one instant (see :func:`rule_outcomes`, which it calls).

    No events in either window is ``NO_DATA`` (a short window with no
    events cannot confirm that the burn goes on). A burning rule whose long
    window has fewer than ``min_events`` events is ``LOW_TRAFFIC`` and does
    not fire; see docs/slo.md for what the guard costs.
    """
    code = rule_outcomes(rule, objective, np.array([long.good]), np.array([long.total]),
                         np.array([short.good]), np.array([short.total]), min_events)[0]
    long_burn, short_burn = (burn_rate(c.good, c.total, objective) for c in (long, short))
    return RuleEvaluation(rule, OUTCOME_CODES[code], long_burn, short_burn, long.total)


@dataclass(frozen=True)
class SeverityEvaluation:
    """All rules of one severity at one instant; fires when any rule fires."""

    severity: str
    evaluations: tuple[RuleEvaluation, ...]

    @property
    def firing(self) -> bool:
        return any(e.firing for e in self.evaluations)

    @property
    def no_data(self) -> bool:
        """No rule could be evaluated at all (every long window is empty)."""
        return all(e.long_burn is None for e in self.evaluations)


def evaluate_severity(windows: AlertWindows, severity: str, objective: float,
                      counts: dict[timedelta, WindowCounts], min_events: int = 0) -> SeverityEvaluation:
    """Evaluate the rules of one severity from counts keyed by window (every window of the rules needed)."""
    missing = [w for r in windows.for_severity(severity) for w in (r.long_window, r.short_window) if w not in counts]
    if missing:
        raise ValueError(f"counts: no counts for window(s) {sorted(set(missing))}")
    return SeverityEvaluation(severity, tuple(
        evaluate_rule(r, objective, counts[r.long_window], counts[r.short_window], min_events)
        for r in windows.for_severity(severity)))
