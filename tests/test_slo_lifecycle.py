"""Alert lifecycle: pending, firing, resolved, repeat, inhibition; the alerts table; Alertmanager's fingerprint."""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import pytest

from analytics.slo.lifecycle import (ALERTS_DDL, FIRING, INACTIVE, PENDING, RESOLVED, AlertKey, AlertState, Lifecycle,
                                     LifecycleConfig, fingerprint)

T = datetime(2026, 11, 30, 12, 0)
MIN = timedelta(minutes=1)
GROUP = {"model_name": "detector", "site": "site-1"}


def _pair():
    return (AlertState.new(AlertKey.of("det-success", "page", GROUP, {"team": "vision"})),
            AlertState.new(AlertKey.of("det-success", "ticket", GROUP, {"team": "vision"})))


def test_fingerprint_is_alertmanagers():
    # prometheus/common model/signature_test.go (TestLabelSetToFingerprint): the same label sets, the same numbers.
    assert int(fingerprint({}), 16) == 14695981039346656037
    assert int(fingerprint({"name": "garland, briggs", "fear": "love is not enough"}), 16) == 5799056148416392346
    page, ticket = _pair()
    assert page.key.fingerprint != ticket.key.fingerprint and len(page.key.fingerprint) == 16


def test_a_group_without_a_value_alerts_without_that_label():
    # The shipped sample's cloud shadows have no fleet.site: the by-site SLO has a site=null group.
    key = AlertKey.of("success-by-site", "page", {"site": None})
    assert "site" not in key.labels and len(key.fingerprint) == 16
    assert key.fingerprint == AlertKey.of("success-by-site", "page").fingerprint


def _run(lifecycle, alert, conditions, start=T, step=MIN):
    """Feed one condition a minute; return (minute, new state, notification kind) per tick."""
    out = []
    for i, condition in enumerate(conditions):
        alert, note = lifecycle.step(alert, condition, start + i * step)
        out.append((i, alert.state, note.kind if note else None))
    return alert, out


def test_pending_then_firing_then_resolved_then_a_new_episode():
    lifecycle = Lifecycle(LifecycleConfig(pending_for={"page": 2 * MIN, "ticket": 15 * MIN}))
    page, _ = _pair()
    alert, trace = _run(lifecycle, page, [False, True, True, True, True, False, False, True])
    assert [s for _, s, _ in trace] == [INACTIVE, PENDING, PENDING, FIRING, FIRING, RESOLVED, RESOLVED, PENDING]
    assert [k for _, _, k in trace] == [None, None, None, "firing", None, "resolved", None, None]
    assert alert.opened_at == T + 7 * MIN and alert.starts_at is None and alert.ends_at is None


def test_a_blip_shorter_than_pending_for_never_notifies():
    lifecycle = Lifecycle()
    _, trace = _run(lifecycle, _pair()[0], [True, False, True, True, False])
    assert [s for _, s, _ in trace] == [PENDING, INACTIVE, PENDING, PENDING, INACTIVE]
    assert all(k is None for _, _, k in trace)


def test_no_data_holds_the_state_and_does_not_advance_pending():
    lifecycle = Lifecycle(LifecycleConfig(pending_for={"page": 2 * MIN}))
    alert, trace = _run(lifecycle, _pair()[0], [True, None, None, None, True, True])
    # Pending began at minute 0; the no-data minutes neither fire nor reset it: the next True fires (held 4 min).
    assert [s for _, s, _ in trace] == [PENDING, PENDING, PENDING, PENDING, FIRING, FIRING]
    alert, trace = _run(lifecycle, alert, [None] * 3 + [False], start=T + 6 * MIN)
    assert [s for _, s, _ in trace] == [FIRING, FIRING, FIRING, RESOLVED]  # silence is not recovery


def test_repeat_interval_resends_a_firing_alert():
    lifecycle = Lifecycle(LifecycleConfig(pending_for={"page": timedelta(0)}, repeat_interval=timedelta(hours=1)))
    _, trace = _run(lifecycle, _pair()[0], [True] * 150)
    sent = [(i, k) for i, _, k in trace if k]
    assert sent == [(0, "firing"), (60, "repeat"), (120, "repeat")]


def test_page_inhibits_the_ticket_of_the_same_slo_and_group():
    lifecycle = Lifecycle(LifecycleConfig(pending_for={"page": timedelta(0), "ticket": timedelta(0)}))
    page, ticket = _pair()
    # Minute 0: both burn -> only the page is sent; the ticket fires silently, inhibited.
    step = lifecycle.step_group(page, ticket, True, True, T)
    assert [(n.kind, n.alert.key.severity) for n in step.notifications] == [("firing", "page")]
    assert step.ticket.state == FIRING and step.ticket.inhibited
    # Minute 1: the page resolves, the ticket still burns -> page resolved and the ticket is announced now.
    step = lifecycle.step_group(step.page, step.ticket, False, True, T + MIN)
    assert [(n.kind, n.alert.key.severity) for n in step.notifications] == [("resolved", "page"), ("firing", "ticket")]
    assert not step.ticket.inhibited


def test_an_inhibited_ticket_that_never_was_announced_resolves_silently_but_an_announced_one_does_not():
    lifecycle = Lifecycle(LifecycleConfig(pending_for={"page": timedelta(0), "ticket": timedelta(0)}))
    page, ticket = _pair()
    step = lifecycle.step_group(page, ticket, True, True, T)
    step = lifecycle.step_group(step.page, step.ticket, True, False, T + MIN)
    assert step.notifications == () and step.ticket.state == RESOLVED
    # A ticket announced before the page fired still gets its resolved notification under inhibition.
    step = lifecycle.step_group(*_pair(), False, True, T)
    assert [n.kind for n in step.notifications] == ["firing"]
    step = lifecycle.step_group(step.page, step.ticket, True, True, T + MIN)
    step = lifecycle.step_group(step.page, step.ticket, True, False, T + 2 * MIN)
    assert [(n.kind, n.alert.key.severity) for n in step.notifications] == [("resolved", "ticket")]


def test_inhibition_is_per_group():
    lifecycle = Lifecycle()
    page, _ = _pair()
    other_ticket = AlertState.new(AlertKey.of("det-success", "ticket", {**GROUP, "site": "site-2"}))
    with pytest.raises(ValueError, match="same SLO and group"):
        lifecycle.step_group(page, other_ticket, True, True, T)


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match=r"^alerting\.pending_for\.warning: not a severity"):
        LifecycleConfig(pending_for={"warning": MIN}).validate()
    with pytest.raises(ValueError, match=r"^alerting\.repeat_interval: must be positive"):
        LifecycleConfig(repeat_interval=timedelta(0)).validate()


def test_states_round_trip_through_the_alerts_table(tmp_path):
    lifecycle = Lifecycle(LifecycleConfig(pending_for={"page": timedelta(0), "ticket": timedelta(0)}))
    page, ticket = _pair()
    step = lifecycle.step_group(page, ticket, True, True, T)
    resolved = lifecycle.step_group(step.page, step.ticket, False, True, T + MIN)
    con = duckdb.connect(str(tmp_path / "alerts.duckdb"))
    con.execute(ALERTS_DDL)
    for state in (resolved.page, resolved.ticket):
        row = state.to_row()
        con.execute(f"INSERT INTO alerts ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
    cursor = con.execute("SELECT * FROM alerts ORDER BY severity")
    names = [d[0] for d in cursor.description]
    rows = [dict(zip(names, r)) for r in cursor.fetchall()]
    assert [AlertState.from_row(r) for r in rows] == [resolved.page, resolved.ticket]
    assert rows[0]["state"] == RESOLVED and rows[0]["ends_at"] == T + MIN
    # A new episode of the same alert is a new row under the same fingerprint.
    again = lifecycle.step(resolved.page, True, T + 5 * MIN)[0].to_row()
    con.execute(f"INSERT INTO alerts ({', '.join(again)}) VALUES ({', '.join('?' * len(again))})", list(again.values()))
    assert con.execute("SELECT count(*), count(DISTINCT fingerprint) FROM alerts WHERE severity = 'page'").fetchone() == (2, 1)
