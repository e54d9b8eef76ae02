"""The live SLO job on a real file: alerts of SLOs removed from the file are resolved, not left firing."""

from __future__ import annotations

from datetime import datetime, timedelta

from analytics.slo.job import ALERT_COLUMNS, SloJob
from analytics.slo.lifecycle import AlertKey, AlertState
from analytics.slo.spec import slos_from_dict
from tests.analytics_data import read

SPECS = slos_from_dict({"slos": [{"name": "kept", "objective": 0.99}]})


def test_open_alerts_of_an_slo_no_longer_in_the_file_are_resolved_and_announced(store):
    opened = datetime(2026, 11, 30, 10, 0)
    firing = AlertState(AlertKey.of("gone", "page", {"site": "a"}), "firing", opened, opened + timedelta(minutes=2),
                        None, opened + timedelta(minutes=5), opened + timedelta(minutes=2), True)
    pending = AlertState(AlertKey.of("gone", "ticket", {"site": "a"}), "pending", opened, None, None, opened)
    kept = AlertState(AlertKey.of("kept", "page"), "firing", opened, opened, None, opened, opened, True)

    def write(con):
        for state in (firing, pending, kept):
            row = state.to_row()
            con.execute(f"INSERT INTO alerts ({', '.join(ALERT_COLUMNS)}) VALUES ({', '.join('?' * len(ALERT_COLUMNS))})",
                        [row[c] for c in ALERT_COLUMNS])
    store.submit(write).result()
    sent = []
    job = SloJob(store, SPECS, sli_jobs=["slo_sli_minute"], enqueue=lambda con, messages: sent.extend(messages))
    job.run_due(datetime(2026, 11, 30, 12, 0))
    rows = {(r["slo"], r["severity"]): r for r in read(store, "SELECT * FROM alerts").to_pylist()}
    assert set(rows) == {("gone", "page"), ("kept", "page")}  # the pending one never fired: gone
    assert rows[("gone", "page")]["state"] == "resolved" and rows[("gone", "page")]["ends_at"] is not None
    assert rows[("kept", "page")]["state"] == "firing"  # an SLO of the file is the evaluation's business
    assert [(m.state.key.slo, m.state.state) for m in sent] == [("gone", "resolved")]
    assert "no longer in the SLO file" in sent[0].annotations["summary"]
