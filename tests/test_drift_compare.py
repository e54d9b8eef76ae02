"""``fleetwatch drift compare`` end to end on generated Parquet and CSV files."""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from fleetwatch.cli import main
from tests.drift_data import categories, normal

N = 20_000


def _tables() -> tuple[pa.Table, pa.Table]:
    ref = {f"num{i}": normal(N, seed=i) for i in range(6)}
    cur = {f"num{i}": normal(N, seed=50 + i) for i in range(6)}
    cur["num2"] = normal(N, mean=0.6, seed=99)                       # shifted
    ref["camera"] = categories(N, {"a": .5, "b": .3, "c": .2}, seed=7)
    cur["camera"] = categories(N, {"a": .5, "b": .3, "c": .2}, seed=8)
    ref["lighting"] = categories(N, {"day": .7, "night": .3}, seed=9)
    cur["lighting"] = categories(N, {"day": .3, "night": .7}, seed=10)  # shifted
    ref["zone"], cur["zone"] = np.arange(N) % 4, np.arange(N) % 4     # integers, declared categorical
    return pa.table(ref), pa.table(cur)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_compare_flags_the_shifted_features_only(tmp_path, fmt, capsys):
    ref, cur = _tables()
    paths = [tmp_path / f"{name}.{fmt}" for name in ("ref", "cur")]
    for table, path in zip((ref, cur), paths):
        pq.write_table(table, path) if fmt == "parquet" else pacsv.write_csv(table, path)
    out, js = tmp_path / "report.html", tmp_path / "report.json"
    code = main(["drift", "compare", "--reference", str(paths[0]), "--current", str(paths[1]),
                 "--categorical", "zone", "--out", str(out), "--json", str(js)])
    assert code == 0
    payload = json.loads(js.read_text())
    features = {f["name"]: f for f in payload["features"]}
    assert set(features) == set(ref.column_names)
    assert {n for n, f in features.items() if f["drifted"]} == {"num2", "lighting"}
    assert features["zone"]["kind"] == "categorical" and features["camera"]["kind"] == "categorical"
    for name, feature in features.items():
        methods = (("psi", "ks", "wasserstein", "jensen_shannon") if feature["kind"] == "numeric"
                   else ("psi", "jensen_shannon", "chi_square", "linf"))
        assert all(isinstance(feature[m], float) for m in methods), name
    assert payload["verdict"]["recommendation"] in ("investigate", "retrain")
    assert payload["verdict"]["drifted_features"] == 2
    html = out.read_text()
    assert not re.search(r"https?://", html)
    assert html.count("<svg") == len(features) and "num2" in html
    assert "drifted features: num2, lighting" in capsys.readouterr().out


def test_bad_input_is_one_line(tmp_path, capsys):
    ref, cur = _tables()
    pq.write_table(ref, tmp_path / "ref.parquet")
    pq.write_table(cur.drop_columns(["num4"]), tmp_path / "cur.parquet")
    (tmp_path / "notes.parquet").write_text("not parquet")
    cases = [
        (["--current", str(tmp_path / "cur.parquet")], "column 'num4' of the reference is not in the current file"),
        (["--current", str(tmp_path / "ref.parquet"), "--categorical", "nope"], "'nope', which is not a column"),
        (["--current", str(tmp_path / "missing.csv")], "no such file"),
        (["--current", str(tmp_path / "notes.parquet")], "cannot read it"),
    ]
    for extra, message in cases:
        assert main(["drift", "compare", "--reference", str(tmp_path / "ref.parquet"), *extra]) == 1
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def test_the_report_of_50_features_is_small_and_takes_extra_sections():
    from analytics.drift.report_html import render_report
    from analytics.drift.verdict import compare_profiles
    from tests.drift_data import profiles

    reference = {f"f{i:02d}": normal(2000, seed=i) for i in range(40)}
    current = {f"f{i:02d}": normal(2000, mean=0.5 if i % 10 == 0 else 0.0, seed=500 + i) for i in range(40)}
    for i in range(10):
        reference[f"c{i}"] = categories(2000, {f"v{k}": 1 / 25 for k in range(25)}, seed=i)
        current[f"c{i}"] = categories(2000, {f"v{k}": 1 / 25 for k in range(25)}, seed=900 + i)
    ref, cur = profiles(reference, current, categorical=[f"c{i}" for i in range(10)])
    html = render_report(compare_profiles(ref, cur).to_json(), title="fleet <drift>",
                         extra_sections=[("Shadow mode", "<p id=\"shadow\">agreement 0.91</p>")])
    assert len(html.encode()) < 1_000_000 and html.count("<svg") == 50
    assert "<h2>Shadow mode</h2><p id=\"shadow\">agreement 0.91</p>" in html
    assert "fleet &lt;drift&gt;" in html and not re.search(r"https?://", html)
