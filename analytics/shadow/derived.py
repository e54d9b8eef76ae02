"""The shadow and ground-truth figures for Python callers (the drift report), from any ``read(sql, params)``.

::

    from analytics.shadow.derived import shadow_agreement, edge_error_bound
    rows = shadow_agreement(read, model_name="defect-detector", since=start, until=end, group_by="site")
    rows[0]["kappa"], rows[0]["edge_error_lower"], rows[0]["edge_error_upper"]

Each function runs the read API's named query of the same name (so the
numbers are the API's, to the digit) and returns its rows as dictionaries.
``read`` is what window jobs get (:data:`analytics.jobs.framework.Read`) or
any callable running DuckDB SQL with ``$name`` parameters into Arrow.
"""

from __future__ import annotations

from datetime import datetime, timezone

from analytics.jobs.framework import Read


def run_named(read: Read, name: str, **params) -> list[dict]:
    """Rows of named query ``name`` with ``params`` (datetimes, numbers or strings; None: the default)."""
    from analytics.api.catalog import CATALOG  # the catalog imports this package's queries

    raw = {key: _text(value) for key, value in params.items() if value is not None}
    bound = CATALOG[name].bind(raw)
    return bound.finish(read(bound.sql, bound.params)).to_pylist()


def _text(value) -> str:
    """A parameter as the API takes it; a naive datetime is UTC, as everywhere in analytics."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).isoformat()
    return str(value)


def shadow_agreement(read: Read, **params) -> list[dict]:
    """Coverage, agreement, kappa, deltas, unmatched counts and the error bound (see docs/api.md)."""
    return run_named(read, "shadow_agreement", **params)


def shadow_flips(read: Read, **params) -> list[dict]:
    return run_named(read, "shadow_flips", **params)


def ground_truth_accuracy(read: Read, **params) -> list[dict]:
    return run_named(read, "ground_truth_accuracy", **params)


def label_lag(read: Read, **params) -> list[dict]:
    return run_named(read, "label_lag", **params)


def retraining_cadence(read: Read, **params) -> list[dict]:
    return run_named(read, "retraining_cadence", **params)


def edge_error_bound(agreement_rate: float, cloud_error_rate: float) -> tuple[float, float]:
    """Bounds on the edge model's error rate from agreement and the cloud's error rate (docs/shadow.md).

    With disagreement d = 1 - agreement: a wrong edge answer either
    disagrees with the cloud or matches a wrong cloud answer, so
    e_e <= d + e_c; a disagreement needs at least one of the two wrong, so
    d <= e_e + e_c; and the cloud is wrong only where the edge is or they
    disagree, so e_c <= e_e + d. Hence |d - e_c| <= e_e <= min(1, d + e_c).
    """
    if not (0 <= agreement_rate <= 1 and 0 <= cloud_error_rate <= 1):
        raise ValueError(f"rates must be in [0, 1], got agreement {agreement_rate}, cloud error {cloud_error_rate}")
    disagreement = 1 - agreement_rate
    return abs(disagreement - cloud_error_rate), min(1.0, disagreement + cloud_error_rate)
