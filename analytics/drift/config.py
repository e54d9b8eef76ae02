"""Thresholds, binning and corrections of the drift library (docs/drift.md gives each default's source).

::

    config = DriftConfig()                                  # the documented defaults
    config = DriftConfig(correction="bonferroni", numeric_effect="psi", min_count=500)
    config.validate()                                       # ValueError naming the bad field

Every threshold is an *effect size*: a feature drifts when its effect passes
the threshold AND its test's p-value passes the corrected alpha (at large n
every p-value is tiny, so the p-value alone would flag everything).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

NUMERIC_METHODS = ("psi", "ks", "wasserstein", "jensen_shannon")
CATEGORICAL_METHODS = ("psi", "jensen_shannon", "chi_square", "linf")
CORRECTIONS = ("bonferroni", "benjamini-hochberg")


def _default_thresholds() -> dict[str, float]:
    return {
        "psi": 0.1,              # credit scoring: < 0.1 stable, 0.1-0.25 moderate, > 0.25 major (Siddiqi 2006)
        "ks": 0.1,               # fleetwatch: D = 0.1 is a 0.25-std mean shift of a normal
        "wasserstein": 0.1,      # Evidently's default for numeric columns (normalised by the reference std)
        "jensen_shannon": 0.1,   # Evidently's default for categorical columns
        "linf": 0.1,             # fleetwatch: one category's share moved by 10 points
        "chi_square": 0.1,       # fleetwatch: Cramer's V of the reference-vs-current table
    }


@dataclass
class DriftConfig:
    """What makes a feature, and a dataset, drifted; ``validate()`` raises ValueError naming the field.

    - ``fine_bins``: reference-quantile bins of a numeric profile (KS, Wasserstein, JS, the charts);
      ``coarse_bins`` must divide it: PSI uses the reference's deciles by merging fine bins.
    - ``top_k``: categories a categorical profile keeps by reference count; the rest share "other".
    - ``numeric_effect`` / ``categorical_effect``: the method whose effect size decides ``drifted``;
      its significance test is KS (numeric) or chi-square (categorical).
    - ``min_count``: fewer non-missing values than this on either side gives "insufficient data".
    - ``correction``: bonferroni or benjamini-hochberg over every p-value of a comparison.
    - ``psi_major``: a drifted feature with PSI at or above it asks for a retrain.
    - ``dataset_drift_share``: share of evaluated features drifted that asks for a retrain (Evidently: 0.5).
    - ``missing_share_change``: absolute change of the missing-value share that counts as drift.
    """

    fine_bins: int = 100
    coarse_bins: int = 10
    top_k: int = 20
    psi_epsilon: float = 1e-4
    thresholds: dict[str, float] = field(default_factory=_default_thresholds)
    numeric_effect: str = "wasserstein"
    categorical_effect: str = "jensen_shannon"
    alpha: float = 0.05
    correction: str = "benjamini-hochberg"
    min_count: int = 100
    psi_major: float = 0.25
    dataset_drift_share: float = 0.5
    missing_share_change: float = 0.05

    def validate(self) -> "DriftConfig":
        if not 10 <= self.fine_bins <= 1000:
            raise ValueError(f"drift.fine_bins: must be 10..1000, got {self.fine_bins}")
        if self.coarse_bins < 2 or self.fine_bins % self.coarse_bins:
            raise ValueError(f"drift.coarse_bins: must be at least 2 and divide fine_bins ({self.fine_bins}), "
                             f"got {self.coarse_bins}")
        if not 1 <= self.top_k <= 1000:
            raise ValueError(f"drift.top_k: must be 1..1000, got {self.top_k}")
        if not 0 < self.psi_epsilon < 0.01:
            raise ValueError(f"drift.psi_epsilon: must be in (0, 0.01), got {self.psi_epsilon}")
        unknown = set(self.thresholds) - set(_default_thresholds())
        if unknown:
            raise ValueError(f"drift.thresholds: unknown method {sorted(unknown)[0]!r}; "
                             f"known: {', '.join(_default_thresholds())}")
        for method, value in self.thresholds.items():
            if not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"drift.thresholds.{method}: must be a positive number, got {value!r}")
        if self.numeric_effect not in NUMERIC_METHODS:
            raise ValueError(f"drift.numeric_effect: one of {', '.join(NUMERIC_METHODS)}, got {self.numeric_effect!r}")
        if self.categorical_effect not in CATEGORICAL_METHODS:
            raise ValueError(f"drift.categorical_effect: one of {', '.join(CATEGORICAL_METHODS)}, "
                             f"got {self.categorical_effect!r}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"drift.alpha: must be in (0, 1), got {self.alpha}")
        if self.correction not in CORRECTIONS:
            raise ValueError(f"drift.correction: one of {', '.join(CORRECTIONS)}, got {self.correction!r}")
        if self.min_count < 2:
            raise ValueError(f"drift.min_count: must be at least 2, got {self.min_count}")
        if self.psi_major <= 0:
            raise ValueError(f"drift.psi_major: must be positive, got {self.psi_major}")
        if not 0 < self.dataset_drift_share <= 1:
            raise ValueError(f"drift.dataset_drift_share: must be in (0, 1], got {self.dataset_drift_share}")
        if not 0 < self.missing_share_change <= 1:
            raise ValueError(f"drift.missing_share_change: must be in (0, 1], got {self.missing_share_change}")
        return self

    def threshold(self, method: str) -> float:
        return float({**_default_thresholds(), **self.thresholds}[method])

    def to_json(self) -> dict:
        return asdict(self)
