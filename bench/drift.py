"""Drift benchmark (issue 11): ``fleetwatch drift compare`` against Evidently's data-drift preset.

    python bench/drift.py            # 1,000,000 rows x 25 columns; memory also at 4,000,000 rows
    python bench/drift.py --quick    # 100,000 rows; memory also at 400,000 rows

1. **Data.** Reference and current Parquet files of the same size, 20
   numeric and 5 categorical columns, written in row groups of 250,000 rows
   with a fixed seed. Shifted in the current file: ``num03`` (mean +0.3
   std), ``num07`` (std x1.5), ``num11`` (mean +0.02 std: significant at this
   n, below every effect threshold, so not drift by design: reported as
   ``below_effect_threshold``, not as missed), ``num15`` (10 % of values
   missing instead of none; scipy drops missing values and cannot see it)
   and ``cat2`` (shares of two categories swapped).
2. **fleetwatch.** ``fleetwatch drift compare`` on the two files (JSON and
   HTML written) in a child process: wall time of the whole process and its
   peak RSS (``ru_maxrss`` from ``os.wait4``), which features it flags; the
   same again on files 4x as long, for the peak memory.
3. **Evidently.** Installed by this script in its own virtual environment
   (``/tmp/fw-evidently-venv``: ``pip install evidently 'pandas<3'``; 0.7
   does not import with pandas 3), run as a child of that environment's
   Python: it reads the same Parquet files with pandas and runs
   ``Report([DataDriftPreset()])``; wall time and peak RSS of the child, the
   columns it flags. If it cannot be installed the output says so.
4. **scipy on the raw data.** Two-sample KS (numeric) and chi-square
   (categorical) on every column, Bonferroni over the 25 columns at 0.05;
   missing values dropped, as scipy needs. Which shifted columns does it
   flag that fleetwatch does not?

Data generation and the scipy test run in child processes too: a child's
``ru_maxrss`` counts the pages it shares with its parent at fork time, so
the parent stays small for the children's peaks to be their own.

The last line of output is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ingest import machine  # noqa: E402

EVIDENTLY_VENV = Path("/tmp/fw-evidently-venv")
NUMERIC, CATEGORICAL = 20, 5
SHIFTED = {"num03", "num07", "num11", "num15", "cat2"}
CHUNK = 250_000
CATEGORY_SHARES = {"a": .4, "b": .25, "c": .15, "d": .1, "e": .06, "f": .04}

EVIDENTLY_SCRIPT = """
import json, sys, time
started = time.perf_counter()
import pandas as pd
import evidently
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset
ref_path, cur_path, numeric, categorical = sys.argv[1], sys.argv[2], sys.argv[3].split(","), sys.argv[4].split(",")
ref, cur = pd.read_parquet(ref_path), pd.read_parquet(cur_path)
loaded = time.perf_counter()
definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
snapshot = Report([DataDriftPreset()]).run(Dataset.from_pandas(cur, data_definition=definition),
                                           Dataset.from_pandas(ref, data_definition=definition))
flagged = []
for metric in snapshot.dict()["metrics"]:
    config = metric["config"]
    if config.get("type", "").endswith("ValueDrift"):
        method, value, threshold = config["method"], metric["value"], config["threshold"]
        drifted = value < threshold if "p_value" in method else value >= threshold
        if drifted:
            flagged.append(config["column"])
print(json.dumps({"version": evidently.__version__, "flagged": sorted(flagged),
                  "load_s": loaded - started, "report_s": time.perf_counter() - loaded}))
"""


def write_files(folder: Path, rows: int) -> tuple[Path, Path]:
    """Reference and current Parquet files of ``rows`` rows each, written a row group at a time."""
    paths = folder / f"ref-{rows}.parquet", folder / f"cur-{rows}.parquet"
    for which, path in enumerate(paths):
        rng = np.random.default_rng(1000 * which + rows % 997)
        writer = None
        for start in range(0, rows, CHUNK):
            n = min(CHUNK, rows - start)
            columns = {}
            for i in range(NUMERIC):
                name = f"num{i:02d}"
                mean, std = float(i), 1.0 + i / 10
                if which and name == "num03":
                    mean += 0.3 * std
                if which and name == "num07":
                    std *= 1.5
                if which and name == "num11":
                    mean += 0.02 * std
                values = rng.normal(mean, std, n) if i % 2 == 0 else mean + std * (rng.gamma(2.0, 1.0, n) - 2.0)
                if which and name == "num15":
                    values[rng.random(n) < 0.1] = np.nan
                columns[name] = pa.array(values, from_pandas=True)
            for i in range(CATEGORICAL):
                shares = dict(CATEGORY_SHARES)
                if which and i == 2:
                    shares["a"], shares["c"] = shares["c"], shares["a"]
                columns[f"cat{i}"] = pa.array(rng.choice(list(shares), n, p=list(shares.values())))
            table = pa.table(columns)
            writer = writer or pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
        writer.close()
    return paths


def run_child(argv: list[str]) -> tuple[str, float, float]:
    """Run a child process; its stdout, wall seconds and peak RSS in MiB (its own ru_maxrss)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(argv, stdout=out, stderr=err, cwd=ROOT)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        if process.returncode:
            raise RuntimeError(f"{argv[0]} exited {process.returncode}: {err.read().decode()[-2000:]}")
        return out.read().decode(), wall, usage.ru_maxrss / 1024


def fleetwatch_compare(ref: Path, cur: Path, folder: Path) -> dict:
    _, wall, rss = run_child([sys.executable, "-m", "fleetwatch", "drift", "compare", "--reference", str(ref),
                              "--current", str(cur), "--out", str(folder / "report.html"),
                              "--json", str(folder / "report.json")])
    payload = json.loads((folder / "report.json").read_text())
    return {"wall_s": round(wall, 2), "peak_rss_mib": round(rss), "report_html_kib": round(
        (folder / "report.html").stat().st_size / 1024), "recommendation": payload["verdict"]["recommendation"],
        "flagged": sorted(f["name"] for f in payload["features"] if f["drifted"])}


def evidently_python() -> tuple[Path | None, str]:
    """The Evidently venv's python, installing it on first use; (None, why) when that fails."""
    python = EVIDENTLY_VENV / "bin" / "python"
    check = [str(python), "-c", "import evidently"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python, "reused"
    try:
        subprocess.run([sys.executable, "-m", "venv", str(EVIDENTLY_VENV)], check=True, capture_output=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "evidently", "pandas<3"], check=True,
                       capture_output=True, timeout=1800)
        subprocess.run(check, check=True, capture_output=True)
    except (subprocess.SubprocessError, OSError) as exc:
        return None, f"Evidently could not be installed: {exc}"
    return python, "installed"


def evidently_compare(python: Path, ref: Path, cur: Path) -> dict:
    numeric = ",".join(f"num{i:02d}" for i in range(NUMERIC))
    categorical = ",".join(f"cat{i}" for i in range(CATEGORICAL))
    out, wall, rss = run_child([str(python), "-c", EVIDENTLY_SCRIPT, str(ref), str(cur), numeric, categorical])
    result = json.loads(out.strip().splitlines()[-1])
    return {"wall_s": round(wall, 2), "peak_rss_mib": round(rss), "version": result["version"],
            "load_s": round(result["load_s"], 2), "report_s": round(result["report_s"], 2),
            "flagged": result["flagged"]}


def in_child(*argv: str) -> object:
    """Run one of this script's helper steps in a child process; its JSON answer."""
    out, _, _ = run_child([sys.executable, str(Path(__file__).resolve()), *argv])
    return json.loads(out.strip().splitlines()[-1])


def scipy_flags(ref: Path, cur: Path, alpha: float = 0.05) -> list[str]:
    from scipy import stats

    ref_table, cur_table = pq.read_table(ref), pq.read_table(cur)
    flagged = []
    for name in ref_table.column_names:
        r = ref_table[name].to_numpy(zero_copy_only=False)
        c = cur_table[name].to_numpy(zero_copy_only=False)
        if name.startswith("num"):
            p = stats.ks_2samp(r[~np.isnan(r)], c[~np.isnan(c)]).pvalue
        else:
            labels = sorted(set(np.unique(r)) | set(np.unique(c)))
            table = [[int(np.sum(x == label)) for label in labels] for x in (r, c)]
            p = stats.chi2_contingency(table, correction=False).pvalue
        if p <= alpha / ref_table.num_columns:
            flagged.append(name)
    return sorted(flagged)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 rows (400,000 for the memory check)")
    parser.add_argument("--step", nargs="+", help=argparse.SUPPRESS)  # internal: a helper step in a child
    args = parser.parse_args()
    if args.step:
        step, *rest = args.step
        if step == "write":
            print(json.dumps([str(p) for p in write_files(Path(rest[0]), int(rest[1]))]))
        else:
            print(json.dumps(scipy_flags(Path(rest[0]), Path(rest[1]))))
        return
    rows = 100_000 if args.quick else 1_000_000
    figures: dict = {"rows": rows, "columns": NUMERIC + CATEGORICAL, "shifted": sorted(SHIFTED)}
    with tempfile.TemporaryDirectory(prefix="fw-drift-bench-") as tmp:
        folder = Path(tmp)
        ref, cur = (Path(p) for p in in_child("--step", "write", str(folder), str(rows)))
        print(f"files of {rows:,} rows written", file=sys.stderr, flush=True)
        figures["fleetwatch"] = fleetwatch_compare(ref, cur, folder)
        print(f"fleetwatch: {figures['fleetwatch']}", file=sys.stderr, flush=True)
        python, how = evidently_python()
        figures["evidently_install"] = how
        if python is not None:
            figures["evidently"] = evidently_compare(python, ref, cur)
            print(f"evidently: {figures['evidently']}", file=sys.stderr, flush=True)
            figures["speedup"] = round(figures["evidently"]["wall_s"] / figures["fleetwatch"]["wall_s"], 1)
            figures["memory_ratio"] = round(figures["evidently"]["peak_rss_mib"] /
                                            figures["fleetwatch"]["peak_rss_mib"], 1)
        figures["scipy_flagged"] = in_child("--step", "scipy", str(ref), str(cur))
        # num11's 0.02-std shift is significant at this n but below every effect threshold: not drift by design
        figures["missed_vs_scipy"] = sorted(set(figures["scipy_flagged"]) - set(figures["fleetwatch"]["flagged"])
                                            - {"num11"})
        figures["below_effect_threshold"] = sorted({"num11"} & set(figures["scipy_flagged"]))
        ref.unlink()
        cur.unlink()
        big_ref, big_cur = (Path(p) for p in in_child("--step", "write", str(folder), str(rows * 4)))
        big = fleetwatch_compare(big_ref, big_cur, folder)
        figures["fleetwatch_4x"] = {"rows": rows * 4, **big}
        figures["peak_rss_mib_by_rows"] = {str(rows): figures["fleetwatch"]["peak_rss_mib"],
                                           str(rows * 4): big["peak_rss_mib"]}
    print(json.dumps({"benchmark": "drift", "quick": args.quick, "machine": machine(), **figures}), flush=True)


if __name__ == "__main__":
    main()
