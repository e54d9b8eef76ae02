"""``fleetwatch drift compare``: drift between two Parquet / CSV files, as an HTML report and JSON;
``fleetwatch drift reference import``: a training file as a model version's reference for the drift jobs.

::

    fleetwatch drift compare --reference train.parquet --current serving.csv \\
        --categorical lighting,camera --out report.html --json report.json
    fleetwatch drift reference import --db fleet.duckdb --model defect-detector --version 2.4.0 \\
        --categorical lighting train.parquet

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
    reference = verbs.add_parser("reference", help="the drift jobs' references (docs/drift.md#drift-jobs)")
    reference_verbs = reference.add_subparsers(dest="reference_verb", required=True)
    imported = reference_verbs.add_parser(
        "import", help="profile a training file as a model version's drift reference",
        description="Profile FILE (Parquet or CSV, one column per feature) and store it in the DuckDB file as "
                    "the reference of MODEL VERSION, replacing the pinned or trailing one. No server may hold "
                    "the file; a server started on it afterwards uses the reference from its next drift tick.")
    imported.add_argument("file", metavar="FILE", help="Parquet or CSV, one column per feature")
    imported.add_argument("--db", required=True, metavar="PATH", help="the DuckDB file (no server may hold it)")
    imported.add_argument("--model", required=True, help="ml.model.name")
    imported.add_argument("--version", required=True, help="ml.model.version")
    imported.add_argument("--categorical", default="", metavar="A,B",
                          help="columns to treat as categorical (text columns always are)")


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    if args.drift_verb == "reference":
        return _import_reference(args, out or sys.stdout)
    from analytics.drift.config import DriftConfig
    from analytics.drift.files import compare_files
    from analytics.drift.report_html import render_report

    overrides = {k: v for k, v in (("correction", args.correction), ("alpha", args.alpha)) if v is not None}
    categorical = _names(args.categorical)
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


def _names(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


def _import_reference(args: argparse.Namespace, out: TextIO) -> int:
    from analytics.drift.references import import_reference
    from collector.store.files import DatabaseLockedError
    from collector.store.migrations import SchemaError

    try:
        features = import_reference(args.db, args.model, args.version, args.file, _names(args.categorical))
    except (ValueError, OSError, DatabaseLockedError, SchemaError) as exc:
        print(f"fleetwatch drift reference import: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    out.write(f"imported the reference of {args.model} {args.version} from {args.file}: {', '.join(features)}\n")
    return 0
