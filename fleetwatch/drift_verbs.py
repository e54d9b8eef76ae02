"""``fleetwatch drift compare``: drift between two Parquet / CSV files, as an HTML report and JSON.

::

    fleetwatch drift compare --reference train.parquet --current serving.csv \\
        --categorical lighting,camera --out report.html --json report.json

Prints the verdict (retrain / investigate / no action) and the drifted
features on stdout; errors are one line on stderr (exit 1 for unreadable
input, 2 for usage). docs/drift.md explains every figure.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO


def add_parsers(sub: argparse._SubParsersAction) -> None:
    drift = sub.add_parser("drift", help="drift between a reference and a current dataset",
                           description="Data drift (docs/drift.md).")
    verbs = drift.add_subparsers(dest="drift_verb", required=True)
    compare = verbs.add_parser(
        "compare", help="compare two Parquet / CSV files column by column",
        description="Profile REF once, summarise CUR on its bins and categories, and judge every column: "
                    "PSI, Kolmogorov-Smirnov, Wasserstein, Jensen-Shannon (numeric); PSI, Jensen-Shannon, "
                    "chi-square, L-infinity (categorical); the change of the missing-value share.")
    compare.add_argument("--reference", required=True, metavar="REF", help="Parquet or CSV, one column per feature")
    compare.add_argument("--current", required=True, metavar="CUR", help="Parquet or CSV with the same columns")
    compare.add_argument("--categorical", default="", metavar="A,B",
                         help="columns to treat as categorical (text columns always are)")
    compare.add_argument("--out", metavar="HTML", help="write the self-contained HTML report here")
    compare.add_argument("--json", dest="json_out", metavar="JSON", help="write the JSON results here")
    compare.add_argument("--correction", choices=["benjamini-hochberg", "bonferroni"],
                         help="correction for the number of features (default benjamini-hochberg)")
    compare.add_argument("--alpha", type=float, help="family-wise significance level (default 0.05)")


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from analytics.drift.config import DriftConfig
    from analytics.drift.files import compare_files
    from analytics.drift.report_html import render_report

    overrides = {k: v for k, v in (("correction", args.correction), ("alpha", args.alpha)) if v is not None}
    categorical = [c.strip() for c in args.categorical.split(",") if c.strip()]
    try:
        result = compare_files(args.reference, args.current, categorical, DriftConfig(**overrides))
        payload = {"reference": args.reference, "current": args.current, **result.to_json()}
        if args.json_out:
            with open(args.json_out, "w") as f:
                json.dump(payload, f, indent=1, allow_nan=False)
        if args.out:
            html = render_report(payload, title="Drift report", subtitle=f"reference {args.reference} · "
                                 f"current {args.current}")
            with open(args.out, "w", encoding="utf-8") as f:
                f.write(html)
    except (ValueError, OSError) as exc:
        print(f"fleetwatch drift compare: {exc}", file=sys.stderr)
        return 1
    out = out or sys.stdout
    drifted = ", ".join(f.name for f in result.drifted) or "none"
    out.write(f"{result.recommendation}: drifted features: {drifted}\n")
    for reason in result.reasons:
        out.write(f"  {reason}\n")
    return 0
