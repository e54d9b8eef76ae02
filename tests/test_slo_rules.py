"""Burn-rate rules and budget arithmetic against the SRE Workbook, Sloth's published window specs and numpy."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
import yaml

from analytics.slo.rules import (Outcome, WindowCounts, alert_windows, budget_remaining, budget_spent, burn_rate,
                                 error_ratio, evaluate_rule, evaluate_severity, sloth_alert_windows,
                                 time_to_exhaustion)

DAY, HOUR, MINUTE = timedelta(days=1), timedelta(hours=1), timedelta(minutes=1)

# Sloth's AlertWindows specs as published (github.com/slok/sloth): internal/alert/windows/google-30d.yaml,
# internal/alert/windows/google-28d.yaml and examples/windows/7d.yaml (the page/ticket blocks, verbatim).
SLOTH_SPECS = {
    "30d": """
page:   {quick: {errorBudgetPercent: 2, shortWindow: 5m, longWindow: 1h},
         slow: {errorBudgetPercent: 5, shortWindow: 30m, longWindow: 6h}}
ticket: {quick: {errorBudgetPercent: 10, shortWindow: 2h, longWindow: 1d},
         slow: {errorBudgetPercent: 10, shortWindow: 6h, longWindow: 3d}}
""",
    "28d": """
page:   {quick: {errorBudgetPercent: 2, shortWindow: 5m, longWindow: 1h},
         slow: {errorBudgetPercent: 5, shortWindow: 30m, longWindow: 6h}}
ticket: {quick: {errorBudgetPercent: 10, shortWindow: 2h, longWindow: 1d},
         slow: {errorBudgetPercent: 10, shortWindow: 6h, longWindow: 3d}}
""",
    "7d": """
page:   {quick: {errorBudgetPercent: 8, shortWindow: 5m, longWindow: 1h},
         slow: {errorBudgetPercent: 12.5, shortWindow: 30m, longWindow: 6h}}
ticket: {quick: {errorBudgetPercent: 20, shortWindow: 2h, longWindow: 1d},
         slow: {errorBudgetPercent: 42, shortWindow: 6h, longWindow: 3d}}
""",
}
_HOURS = {"m": 1 / 60, "h": 1, "d": 24}


def _hours(text: str) -> float:
    return float(text[:-1]) * _HOURS[text[-1]]


@pytest.mark.parametrize("period", sorted(SLOTH_SPECS))
def test_windows_and_factors_match_sloths_published_specs(period):
    spec = yaml.safe_load(SLOTH_SPECS[period])
    period_hours = _hours(period)
    rules = alert_windows(timedelta(hours=period_hours)).rules
    expected = [(severity, speed, spec[severity][speed]) for severity in ("page", "ticket") for speed in ("quick", "slow")]
    assert len(rules) == 4
    for rule, (severity, speed, window) in zip(rules, expected):
        assert (rule.severity, rule.speed) == (severity, speed)
        assert rule.long_window == timedelta(hours=_hours(window["longWindow"]))
        assert rule.short_window == timedelta(hours=_hours(window["shortWindow"]))
        # Sloth's getBurnRateFactor: hours needed to spend the share at burn 1, divided by the long window.
        factor = window["errorBudgetPercent"] / 100 * period_hours / _hours(window["longWindow"])
        assert rule.factor == pytest.approx(factor, rel=1e-12)


def test_a_sloth_catalog_loads_into_the_same_rules():
    for period, text in SLOTH_SPECS.items():
        loaded = sloth_alert_windows({"version": "alertWindows/v1", "sloPeriod": period, **yaml.safe_load(text)})
        assert loaded == alert_windows(timedelta(hours=_hours(period)))
    wrapped = sloth_alert_windows({"apiVersion": "sloth.slok.dev/v1", "kind": "AlertWindows",
                                   "spec": {"sloPeriod": "2w", **yaml.safe_load(SLOTH_SPECS["30d"])}})
    assert wrapped.period == 14 * DAY and wrapped.rules[0].factor == pytest.approx(0.02 * 14 * 24)
    bad = yaml.safe_load(SLOTH_SPECS["30d"])
    bad["ticket"]["slow"]["shortWindow"] = "4d"
    with pytest.raises(ValueError, match=r"^ticket\.slow: need shortWindow < longWindow <= sloPeriod"):
        sloth_alert_windows({"sloPeriod": "30d", **bad})
    bad["ticket"]["slow"]["errorBudgetPercent"] = 0
    with pytest.raises(ValueError, match=r"^ticket\.slow\.errorBudgetPercent: expected a percentage"):
        sloth_alert_windows({"sloPeriod": "30d", **bad})


def test_thirty_day_factors_are_the_workbooks():
    assert [round(r.factor, 9) for r in alert_windows(30 * DAY).rules] == [14.4, 6.0, 3.0, 1.0]


def test_other_periods_keep_the_workbook_speeds_and_short_ones_are_refused():
    for days in (14, 45, 90):
        rules = alert_windows(days * DAY).rules
        assert [round(r.factor, 9) for r in rules] == [14.4, 6.0, 3.0, 1.0]
        for rule in rules:  # the share each rule stands for is what that speed spends in its long window
            assert rule.budget_share == pytest.approx(budget_spent(rule.factor, rule.long_window, days * DAY))
    with pytest.raises(ValueError, match="too short"):
        alert_windows(3 * DAY)


def _period_spend(burn: float, burn_minutes: int, objective: float = 0.999, per_minute: int = 10_000) -> float:
    """Share of a 30-day budget spent by a burn held ``burn_minutes``, from simulated per-minute counts."""
    minutes = 30 * 24 * 60
    total = np.full(minutes, per_minute, dtype=np.int64)
    bad = np.zeros(minutes, dtype=np.int64)
    bad[:burn_minutes] = round(burn * (1 - objective) * per_minute)
    remaining = budget_remaining(int(total.sum() - bad.sum()), int(total.sum()), objective)
    independent = bad.sum() / ((1 - objective) * total.sum())
    assert 1 - remaining == pytest.approx(independent, rel=1e-12)
    return 1 - remaining


@pytest.mark.parametrize("burn, duration, spent", [(14.4, HOUR, 0.02), (6.0, 6 * HOUR, 0.05), (1.0, 3 * DAY, 0.10)])
def test_workbook_burns_spend_the_workbook_shares_of_a_30_day_budget(burn, duration, spent):
    assert budget_spent(burn, duration, 30 * DAY) == pytest.approx(spent)
    assert _period_spend(burn, int(duration / MINUTE)) == pytest.approx(spent, rel=1e-9)


def test_burn_rate_and_error_ratio_from_counts_against_numpy():
    rng = np.random.default_rng(7)
    outcomes = rng.random(50_000) < 0.004  # True = bad
    good, total = int((~outcomes).sum()), outcomes.size
    assert error_ratio(good, total) == pytest.approx(np.mean(outcomes))
    assert burn_rate(good, total, 0.999) == pytest.approx(np.mean(outcomes) / 0.001)
    assert burn_rate(0, 0, 0.999) is None and error_ratio(0, 0) is None and budget_remaining(0, 0, 0.99) is None


def test_period_budget_weights_windows_by_their_traffic_not_their_ratio():
    # A quiet hour with half its 10 events bad, a busy hour with 10,000 events and none bad.
    good = np.array([5, 10_000])
    total = np.array([10, 10_000])
    remaining = budget_remaining(int(good.sum()), int(total.sum()), 0.99)
    events = np.concatenate([np.r_[np.ones(5), np.zeros(5)], np.zeros(10_000)])  # 1 = bad, one per event
    assert remaining == pytest.approx(1 - events.mean() / 0.01)
    averaged = 1 - np.mean((total - good) / total) / 0.01
    assert remaining != pytest.approx(averaged)


def test_time_to_exhaustion_matches_a_minute_by_minute_simulation():
    objective, per_minute, period = 0.999, 1_000, 30 * DAY
    budget_events = (1 - objective) * per_minute * (period / MINUTE)
    spent_events = 0.4 * budget_events  # 60 % left
    rate = 5.0
    bad_per_minute = rate * (1 - objective) * per_minute
    minutes = np.arange(1, 100_000)
    exhausted_at = minutes[np.argmax(spent_events + bad_per_minute * minutes >= budget_events - 1e-6)]
    eta = time_to_exhaustion(0.6, rate, period)
    assert eta / MINUTE == pytest.approx(exhausted_at, abs=1)
    assert time_to_exhaustion(0.6, 0.0, period) is None and time_to_exhaustion(None, 2.0, period) is None
    assert time_to_exhaustion(-0.1, 2.0, period) == timedelta(0)


PAGE_QUICK = alert_windows(30 * DAY).rules[0]


def test_rule_fires_only_when_both_windows_burn():
    both = evaluate_rule(PAGE_QUICK, 0.999, WindowCounts(9_800, 10_000), WindowCounts(800, 1_000))
    assert both.outcome is Outcome.FIRING and both.long_burn == pytest.approx(20.0)
    recovered = evaluate_rule(PAGE_QUICK, 0.999, WindowCounts(9_800, 10_000), WindowCounts(1_000, 1_000))
    assert recovered.outcome is Outcome.OK and recovered.short_burn == 0.0


def test_no_data_is_not_no_burn():
    quiet = evaluate_rule(PAGE_QUICK, 0.999, WindowCounts(0, 0), WindowCounts(0, 0))
    healthy = evaluate_rule(PAGE_QUICK, 0.999, WindowCounts(100, 100), WindowCounts(10, 10))
    assert quiet.outcome is Outcome.NO_DATA and quiet.long_burn is None
    assert healthy.outcome is Outcome.OK and healthy.long_burn == 0.0
    silent_now = evaluate_rule(PAGE_QUICK, 0.999, WindowCounts(50, 100), WindowCounts(0, 0))
    assert silent_now.outcome is Outcome.NO_DATA


def test_low_traffic_guard_keeps_one_failure_in_a_quiet_hour_from_paging():
    one_of_three = (WindowCounts(2, 3), WindowCounts(0, 1))
    assert evaluate_rule(PAGE_QUICK, 0.999, *one_of_three).outcome is Outcome.FIRING
    guarded = evaluate_rule(PAGE_QUICK, 0.999, *one_of_three, min_events=100)
    assert guarded.outcome is Outcome.LOW_TRAFFIC and not guarded.firing
    busy = evaluate_rule(PAGE_QUICK, 0.999, WindowCounts(9_000, 10_000), WindowCounts(900, 1_000), min_events=100)
    assert busy.firing


def _counts_at(minute: int, good: np.ndarray, total: np.ndarray, window: timedelta) -> WindowCounts:
    n = int(window / MINUTE)
    lo = max(0, minute + 1 - n)
    return WindowCounts(int(good[lo:minute + 1].sum()), int(total[lo:minute + 1].sum()))


def test_an_outage_pages_at_once_and_the_short_windows_clear_it_soon_after_recovery():
    windows = alert_windows(30 * DAY)
    minutes = 4 * 24 * 60
    total = np.full(minutes, 100, dtype=np.int64)
    good = total.copy()
    good[3 * 1440: 3 * 1440 + 30] = 0  # a 30-minute total outage on day 4
    quick, slow = [], []
    for minute in range(3 * 1440 - 10, 3 * 1440 + 90):
        counts = {w: _counts_at(minute, good, total, w) for w in windows.windows}
        page = evaluate_severity(windows, "page", 0.999, counts)
        if page.evaluations[0].firing:
            quick.append(minute - 3 * 1440)
        if page.evaluations[1].firing:
            slow.append(minute - 3 * 1440)
    # 1h holds 6,000 events: 100 bad (one outage minute) beat 14.4 x 0.1 % = 86.4, so it pages at once;
    # 6h holds 36,000: 6 x 0.1 % = 216 bad takes three outage minutes.
    assert quick[0] == 0 and slow[0] == 2
    # Any outage minute inside the short window keeps it burning: 5 minutes after the last bad minute (29)
    # the 5m window is clean, 30 minutes after it the 30m window.
    assert quick == list(range(0, 29 + 5)) and slow == list(range(2, 29 + 30))


def test_severity_evaluation_needs_every_window():
    with pytest.raises(ValueError, match="no counts for window"):
        evaluate_severity(alert_windows(30 * DAY), "page", 0.999, {HOUR: WindowCounts(1, 1)})


def test_window_counts_refuse_impossible_counts():
    with pytest.raises(ValueError, match="0 <= good <= total"):
        WindowCounts(5, 3)


def test_a_burn_exactly_at_the_factor_does_not_fire_as_in_sloths_greater_than():
    ticket_slow = alert_windows(30 * DAY).rules[3]
    assert ticket_slow.factor == 1.0
    at = evaluate_rule(ticket_slow, 0.5, WindowCounts(50, 100), WindowCounts(5, 10))
    above = evaluate_rule(ticket_slow, 0.5, WindowCounts(49, 100), WindowCounts(4, 10))
    assert (at.long_burn, at.outcome, above.outcome) == (1.0, Outcome.OK, Outcome.FIRING)
