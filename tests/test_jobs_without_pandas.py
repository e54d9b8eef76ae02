"""The analytics jobs run as `fleetwatch serve` runs them: in a process that has not imported pandas.

Without pandas, pyarrow cannot turn a nanosecond timestamp into a datetime
(with pandas loaded it quietly makes a pandas Timestamp instead), and the
shipped sample's receive and event times have nanoseconds. Tests that load
pandas for themselves would never see it, so this runs in a child process
that refuses to import it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_freshness_job_and_zero_tolerance_alerts_on_the_sample_without_pandas(sample_db, tmp_path):
    db = tmp_path / "sample.duckdb"
    shutil.copyfile(sample_db, db)
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["pandas"] = None  # as in `fleetwatch serve`: pyarrow finds no pandas
        from datetime import datetime
        from analytics.health.alerts import ZeroToleranceAlerts
        from analytics.jobs.framework import JobRunner
        from analytics.schema import ANALYTICS
        from analytics.slo.sli_job import sli_jobs
        from analytics.slo.spec import load_slo_file
        from collector.store.database import Store
        from collector.store.versions import COLLECTOR

        store = Store({str(db)!r}, migrations=[COLLECTOR, ANALYTICS], readers=2)
        store.open()
        runner = JobRunner(store, sli_jobs(load_slo_file("sample_data/slos.yaml")))
        # Two runs: the second finds the first's stored receive times (the lookup that failed).
        for until in (datetime(2026, 11, 2, 3), datetime(2026, 11, 2, 6)):
            report = runner.run_due("slo_freshness_minute", until)
            print("freshness", report.error)
        result = ZeroToleranceAlerts().evaluate(runner._read, datetime(2026, 11, 3, 9), datetime(2026, 11, 3, 10))
        print("alerts", sorted((t.alertname, t.state) for t in result.transitions))
        store.close()
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    assert lines[:2] == ["freshness None", "freshness None"], run.stdout
    # The sample's integrity failures at 09:15 and 09:28 on Nov 3 (mad3-mcu-001, blr1-mcu-002) page.
    assert lines[2] == "alerts [('ModelIntegrityFailure', 'firing'), ('ModelIntegrityFailure', 'firing')]", run.stdout
