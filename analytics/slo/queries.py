"""The read API's SLO queries: status, burn rates and budgets over time, alert history (docs/api.md).

They read what the live evaluation wrote (``slo_evaluations``, ``alerts``),
so the terminal, the dashboards and the alerts show the same numbers.
"""

from __future__ import annotations

from analytics.api.params import Param
from analytics.api.queries import NamedQuery

_SLO = Param("slo", "string", "only this SLO (default: all)")
_GROUP_FILTERS = tuple(Param(d, "string", f"only groups with this {d.replace('_', ' ')}")
                       for d in ("model_name", "model_version", "site", "region", "device_class"))
_GROUP_WHERE = " AND ".join(f"(${d} IS NULL OR {d} = ${d})" for d in
                            ("model_name", "model_version", "site", "region", "device_class"))

SLO_QUERIES = (
    NamedQuery(
        "slo_status",
        "Each SLO and group at the newest evaluation (at or before as_of): budget left, burn rates, time to "
        "exhaustion, alerts open then.",
        # as_of looks back (a dashboard over a past range, a static data set): the alerts open then are the
        # episodes opened by it and not ended by it, firing once their starts_at has passed.
        f"""
        WITH newest AS (
            SELECT slo, max(evaluated_at) AS evaluated_at FROM slo_evaluations
            WHERE ($slo IS NULL OR slo = $slo) AND evaluated_at <= $as_of GROUP BY slo
        ), open_alerts AS (
            SELECT slo, group_labels AS group_key,
                   string_agg(CASE WHEN alertname = 'SLONoData' THEN 'no-data' ELSE severity END || ' ' ||
                              CASE WHEN starts_at <= $as_of THEN 'firing' ELSE 'pending' END,
                              ', ' ORDER BY severity) AS alerts,
                   min(coalesce(starts_at, opened_at)) AS alerting_since
            FROM (SELECT *, labels::JSON->>'alertname' AS alertname FROM alerts)
            WHERE state IN ('pending', 'firing', 'resolved') AND opened_at <= $as_of
              AND (ends_at IS NULL OR ends_at > $as_of)
            GROUP BY ALL
        )
        SELECT e.slo, e.group_key, e.evaluated_at, e.budget_remaining,
               e.exhaustion_seconds / 3600 AS exhaustion_hours,
               e.burn_5m, e.burn_30m, e.burn_1h, e.burn_6h, e.burn_1d, e.burn_3d, e.burn_period,
               e.good_period, e.total_period, e.page, e.ticket,
               coalesce(a.alerts, '') AS alerts, a.alerting_since
        FROM slo_evaluations e JOIN newest USING (slo, evaluated_at)
        LEFT JOIN open_alerts a USING (slo, group_key)
        WHERE {_GROUP_WHERE}
        ORDER BY e.budget_remaining NULLS LAST, e.slo, e.group_key
        """,
        (_SLO, Param("as_of", "timestamp", "the newest evaluation at or before this instant", default="now"),
         *_GROUP_FILTERS),
        needs="analytics",
    ),
    NamedQuery(
        "slo_burn_rates",
        "One SLO's burn rates and budget over time, per group (every minute of the last two days, hourly before).",
        f"""
        SELECT evaluated_at, group_key, burn_5m, burn_30m, burn_1h, burn_2h, burn_6h, burn_1d, burn_3d,
               burn_period, budget_remaining, exhaustion_seconds / 3600 AS exhaustion_hours, page, ticket
        FROM slo_evaluations
        WHERE slo = $slo AND evaluated_at >= $since AND evaluated_at < $until
          AND ($hourly = 'false' OR minute(evaluated_at) = 0) AND {_GROUP_WHERE}
        ORDER BY group_key, evaluated_at
        """,
        (Param("slo", "string", "the SLO", required=True),
         Param("since", "timestamp", "start of the time range (inclusive)", default="-6h"),
         Param("until", "timestamp", "end of the time range (exclusive)", default="now"),
         Param("hourly", "choice", "only the instants on the hour", default="false", choices=("false", "true")),
         *_GROUP_FILTERS),
        needs="analytics",
    ),
    NamedQuery(
        "slo_budgets",
        "Error budget left per SLO and group, on the hour over a range (the 30-day trend).",
        f"""
        SELECT evaluated_at, slo, group_key, budget_remaining, good_period, total_period, burn_period
        FROM slo_evaluations
        WHERE minute(evaluated_at) = 0 AND evaluated_at >= $since AND evaluated_at < $until
          AND ($slo IS NULL OR slo = $slo) AND {_GROUP_WHERE}
        ORDER BY slo, group_key, evaluated_at
        """,
        (_SLO, Param("since", "timestamp", "start of the time range (inclusive)", default="-30d"),
         Param("until", "timestamp", "end of the time range (exclusive)", default="now"), *_GROUP_FILTERS),
        needs="analytics",
    ),
    NamedQuery(
        "alert_history",
        "Alert episodes overlapping a range, newest first: when each was pending, fired and resolved.",
        """
        SELECT opened_at, starts_at, ends_at, state, slo, severity, labels::JSON->>'alertname' AS alertname,
               group_labels AS group_key, fingerprint, last_notified_at, inhibited, labels
        FROM alerts
        WHERE opened_at < $until AND (ends_at IS NULL OR ends_at >= $since)
          AND ($slo IS NULL OR slo = $slo) AND ($severity IS NULL OR severity = $severity)
          AND ($state IS NULL OR state = $state)
        ORDER BY opened_at DESC, slo, severity
        """,
        (_SLO, Param("since", "timestamp", "start of the time range (inclusive)", default="-7d"),
         Param("until", "timestamp", "end of the time range (exclusive)", default="now"),
         Param("severity", "choice", "only page or ticket", choices=("page", "ticket")),
         Param("state", "choice", "only alerts in this state", choices=("pending", "firing", "resolved"))),
        needs="analytics",
    ),
)
