"""Drift indices from a reference profile and a current summary on its layout (docs/drift.md has the formulas).

::

    values = numeric_indices(reference["brightness"], current["brightness"], DriftConfig())
    values["psi"], values["ks"], values["ks_p_value"], values["wasserstein"], values["jensen_shannon"]
    values = categorical_indices(reference["lighting"], current["lighting"], DriftConfig())
    values["chi_square"], values["chi_square_dof"], values["chi_square_p_value"], values["linf"]
    missing = missing_share_change(reference["brightness"], current["brightness"])

KS and Wasserstein are computed from the fine bins, so they approximate the
exact sample statistics; each comes with a bound on that error
(``ks_error_bound``, ``wasserstein_error_bound``) that holds for any data.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from analytics.drift.config import DriftConfig
from analytics.drift.profiles import Summary

KSTWO_LIMIT = 10_000


def _shares(summary: Summary) -> np.ndarray:
    counts = np.asarray(summary.counts, dtype=np.float64)
    total = counts.sum()
    return counts / total if total else counts


def psi(reference: np.ndarray, current: np.ndarray, epsilon: float) -> float:
    """Population stability index of two share vectors; an empty bin's share counts as ``epsilon``."""
    r = np.where(reference > 0, reference, epsilon)
    c = np.where(current > 0, current, epsilon)
    return float(np.sum((c - r) * np.log(c / r)))


def jensen_shannon(reference: np.ndarray, current: np.ndarray) -> float:
    """Jensen-Shannon distance, base 2 (0 identical .. 1 disjoint); the square root of the divergence."""
    m = (reference + current) / 2

    def kl(p: np.ndarray) -> float:
        nonzero = p > 0
        return float(np.sum(p[nonzero] * np.log2(p[nonzero] / m[nonzero])))

    return math.sqrt(max((kl(reference) + kl(current)) / 2, 0.0))


def coarse_groups(summary: Summary, coarse_bins: int) -> np.ndarray:
    """For each fine bin, its coarse bin: the reference quantile levels k / coarse_bins cut the fine bins."""
    probs = np.asarray(summary.layout.probs, dtype=np.float64)
    cuts = np.arange(1, coarse_bins) / coarse_bins
    # fine bin b >= 1 starts at probs[b - 1]; bin 0 (below the reference) joins the first coarse bin
    starts = np.concatenate([[0.0], probs])
    return np.searchsorted(cuts, starts + 1e-9, side="right")


def coarse_shares(summary: Summary, config: DriftConfig) -> np.ndarray:
    """Numeric shares on the reference's ``coarse_bins`` quantile bins (merged fine bins; open bins join the ends)."""
    return np.bincount(coarse_groups(summary, config.coarse_bins), weights=_shares(summary),
                       minlength=config.coarse_bins)


def _bin_bounds(summary: Summary) -> tuple[np.ndarray, np.ndarray]:
    """Each fine bin's value range for this sample: edges, the open ends at its min / max, clamped to both."""
    edges = np.asarray(summary.layout.edges, dtype=np.float64)
    lo_edge = summary.minimum if summary.minimum is not None else edges[0]
    hi_edge = summary.maximum if summary.maximum is not None else edges[-1]
    lo = np.concatenate([[min(lo_edge, edges[0])], edges])
    hi = np.concatenate([edges, [max(hi_edge, edges[-1])]])
    return np.clip(lo, lo_edge, hi_edge), np.clip(hi, lo_edge, hi_edge)


def _quantile_pieces(summary: Summary):
    shares = _shares(summary)
    lo, hi = _bin_bounds(summary)
    keep = shares > 0
    cum = np.concatenate([[0.0], np.cumsum(shares[keep])])
    cum[-1] = 1.0
    return cum, lo[keep], hi[keep]


def _quantile_at(u: np.ndarray, bin_index: np.ndarray, pieces) -> np.ndarray:
    cum, lo, hi = pieces
    width = cum[bin_index + 1] - cum[bin_index]
    frac = np.clip((u - cum[bin_index]) / np.where(width > 0, width, 1.0), 0.0, 1.0)
    return lo[bin_index] + frac * (hi[bin_index] - lo[bin_index])


def wasserstein(reference: Summary, current: Summary) -> tuple[float, float]:
    """W1 between the binned distributions (values spread evenly within a bin) and the bound on its error.

    W1 = integral over u in (0, 1) of |Q_ref(u) - Q_cur(u)|, with each quantile function linear
    inside a bin; the exact sample W1 differs by at most sum(share x width) over both samples' bins.
    """
    pr, pc = _quantile_pieces(reference), _quantile_pieces(current)
    grid = np.union1d(pr[0], pc[0])
    a, b = grid[:-1], grid[1:]
    mid = (a + b) / 2
    ir = np.clip(np.searchsorted(pr[0], mid, side="right") - 1, 0, len(pr[1]) - 1)
    ic = np.clip(np.searchsorted(pc[0], mid, side="right") - 1, 0, len(pc[1]) - 1)
    da = _quantile_at(a, ir, pr) - _quantile_at(a, ic, pc)
    db = _quantile_at(b, ir, pr) - _quantile_at(b, ic, pc)
    width = b - a
    same_sign = da * db >= 0
    total = np.abs(da) + np.abs(db)
    pieces = np.where(same_sign, width * total / 2,
                      width * (da * da + db * db) / (2 * np.where(total > 0, total, 1.0)))
    bound = sum(float(np.sum(_shares(s) * (hi - lo))) for s in (reference, current) for lo, hi in [_bin_bounds(s)])
    return float(np.sum(pieces)), bound


def kolmogorov_smirnov(reference: Summary, current: Summary) -> tuple[float, float, float]:
    """KS statistic at the bin edges, its asymptotic p-value and the bound on the statistic's error.

    The exact sample statistic lies in [D, D + max over bins of min(share_ref, share_cur)]. The
    p-value is scipy's asymptotic one, kstwo.sf(D, n_e) with n_e = round(n_ref * n_cur / (n_ref + n_cur)),
    and its limit kstwobign.sf(D * sqrt(n_e)) beyond n_e = 10,000 (kstwo costs ~40 ms there; they agree).
    """
    r, c = _shares(reference), _shares(current)
    d = float(np.max(np.abs(np.cumsum(r) - np.cumsum(c))))
    bound = float(np.max(np.minimum(r, c)))
    n, m = reference.count, current.count
    effective_n = round(n * m / (n + m))
    if effective_n > KSTWO_LIMIT:
        return d, float(stats.kstwobign.sf(d * math.sqrt(effective_n))), bound
    return d, float(stats.kstwo.sf(d, max(effective_n, 1))), bound


def chi_square(reference: Summary, current: Summary) -> tuple[float, int, float, float]:
    """Chi-square test of homogeneity on the 2 x categories table: statistic, dof, p-value, Cramer's V.

    Categories empty on both sides are left out; no continuity correction (scipy's correction=False).
    """
    table = np.asarray([reference.counts, current.counts], dtype=np.float64)
    table = table[:, table.sum(axis=0) > 0]
    total = table.sum()
    if table.shape[1] < 2 or min(table.sum(axis=1)) == 0:
        return 0.0, 0, 1.0, 0.0
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / total
    statistic = float(np.sum((table - expected) ** 2 / expected))
    dof = table.shape[1] - 1
    return statistic, dof, float(stats.chi2.sf(statistic, dof)), math.sqrt(statistic / total)


def numeric_indices(reference: Summary, current: Summary, config: DriftConfig) -> dict[str, float | None]:
    d, p, d_bound = kolmogorov_smirnov(reference, current)
    w1, w1_bound = wasserstein(reference, current)
    spread = reference.std
    return {
        "psi": psi(coarse_shares(reference, config), coarse_shares(current, config), config.psi_epsilon),
        "ks": d, "ks_p_value": p, "ks_error_bound": d_bound,
        "wasserstein": w1 / spread if spread else None,
        "wasserstein_error_bound": w1_bound / spread if spread else None,
        "wasserstein_raw": w1,
        "jensen_shannon": jensen_shannon(_shares(reference), _shares(current)),
    }


def categorical_indices(reference: Summary, current: Summary, config: DriftConfig) -> dict[str, float | None]:
    r, c = _shares(reference), _shares(current)
    statistic, dof, p, cramers_v = chi_square(reference, current)
    return {
        "psi": psi(r, c, config.psi_epsilon), "jensen_shannon": jensen_shannon(r, c),
        "chi_square": statistic, "chi_square_dof": dof, "chi_square_p_value": p, "cramers_v": cramers_v,
        "linf": float(np.max(np.abs(r - c))),
    }


def missing_share_change(reference: Summary, current: Summary) -> dict[str, float]:
    """The missing-value share on both sides, its absolute change and a two-proportion z-test (two-sided)."""
    n1, n2 = reference.total, current.total
    p1 = reference.missing / n1 if n1 else 0.0
    p2 = current.missing / n2 if n2 else 0.0
    pooled = (reference.missing + current.missing) / (n1 + n2) if n1 + n2 else 0.0
    variance = pooled * (1 - pooled) * ((1 / n1 if n1 else 0) + (1 / n2 if n2 else 0))
    z = (p2 - p1) / math.sqrt(variance) if variance > 0 else 0.0
    return {"reference_share": p1, "current_share": p2, "change": p2 - p1, "z": z,
            "p_value": float(2 * stats.norm.sf(abs(z)))}
