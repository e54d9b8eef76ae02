"""Shared helpers of the drift tests: samples into DuckDB, profiled and summarised by the library."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from analytics.drift.config import DriftConfig
from analytics.drift.profile_sql import FeatureSpec, profile_reference, summarise
from collector.store.files import open_database


def profiles(reference: dict, current: dict, categorical=(), config: DriftConfig | None = None):
    """``({name: Summary} of the reference, {name: Summary} of the current)`` from column -> array dicts."""
    con = open_database(":memory:")
    con.register("reference_data", pa.table(reference))
    con.register("current_data", pa.table(current))
    features = [FeatureSpec(name, "categorical" if name in categorical else "numeric") for name in reference]
    ref = profile_reference(con, "reference_data", features, config)
    cur = summarise(con, "current_data", ref)
    con.close()
    return ref, cur


def normal(n: int, mean: float = 0.0, std: float = 1.0, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(mean, std, n)


def categories(n: int, shares: dict, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.choice(list(shares), n, p=list(shares.values()))


# The shipped sample's input-drift incident (sample_data/manifest.json), as the drift-job tests read it.
MANIFEST = json.loads((Path(__file__).resolve().parent.parent / "sample_data" / "manifest.json").read_text())
INCIDENT = next(i for i in MANIFEST["incidents"] if i["kind"] == "input_drift")
SITE = INCIDENT["cohort"]["fleet.site"]
MODEL = INCIDENT["cohort"]["ml.model.name"]
SHIFTED = {k.removeprefix("ml.feature.") for k in INCIDENT["magnitude"] if k.startswith("ml.feature.")}
UNCHANGED = {k.removeprefix("ml.feature.") for k in INCIDENT["magnitude"]["unchanged"]}
ONSET = datetime.fromisoformat(INCIDENT["start"].removesuffix("Z"))
