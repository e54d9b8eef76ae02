"""The SLO tables: per-minute SLIs, alert episodes and the evaluations behind them (see docs/schema.md)."""

from __future__ import annotations

from analytics.slo.freshness_job import FRESHNESS_DDL, PRESENCE_DDL
from analytics.slo.lifecycle import ALERTS_DDL
from analytics.slo.sli_job import SLI_MINUTE_DDL
from analytics.slo.spec import DIMENSIONS

# One row per SLO, group and evaluated instant (every minute of the last
# days, then the instants on the hour): what the rules saw.
EVALUATIONS_DDL = f"""
CREATE TABLE IF NOT EXISTS slo_evaluations (
    evaluated_at TIMESTAMP NOT NULL,     -- the instant: windows end here, minutes before it count
    slo VARCHAR NOT NULL,
    group_key VARCHAR NOT NULL,          -- JSON object of the group's dimensions
    {", ".join(f"{d} VARCHAR" for d in DIMENSIONS)},
    burn_5m DOUBLE, burn_30m DOUBLE, burn_1h DOUBLE, burn_2h DOUBLE, burn_6h DOUBLE,
    burn_1d DOUBLE, burn_3d DOUBLE, burn_period DOUBLE,  -- NULL: no events in the window
    good_period UBIGINT NOT NULL,
    total_period UBIGINT NOT NULL,
    budget_remaining DOUBLE,             -- share of the period's budget left (negative: overspent)
    exhaustion_seconds DOUBLE,           -- at the last hour's burn rate; NULL: not burning
    page VARCHAR NOT NULL,               -- firing | ok | no_data | low_traffic
    ticket VARCHAR NOT NULL
)
"""

SLI_DDL = [SLI_MINUTE_DDL, FRESHNESS_DDL, PRESENCE_DDL]
EVALUATION_DDL = [ALERTS_DDL, EVALUATIONS_DDL]
