"""`fleetwatch report drift` and GET /api/v1/reports/drift on the shipped sample, after its drift and shadow jobs.

The sample's incidents (sample_data/manifest.json): new lighting at
atl-factory-2 shifts brightness and lighting of defect-detector from
2026-11-02 19:12; defect-detector 2.4.0 (quantised) agrees less with its
cloud shadow than 2.3.1. Rates are checked against the manifest within
Z = 3.29 binomial standard errors (two-sided 99.9 %).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

from analytics.api.catalog import CATALOG
from analytics.api.client import ApiError, ReadApiClient
from analytics.api.config import ApiConfig
from analytics.api.server import ReadApi
from analytics.api.sql_guard import SqlGuard
from collector.store.files import open_database
from collector.store.read_pool import ReadPool
from tests.drift_data import MANIFEST, MODEL, SHIFTED, SITE, UNCHANGED

TOKEN = "report-read-token"
Z = 3.29
SHADOW = next(i for i in MANIFEST["incidents"] if i["kind"] == "shadow_disagreement")["magnitude"]
ROLLOUT = next(r for r in MANIFEST["rollouts"] if r["rollout_id"] == SHADOW["rollout_id"])
OLD, NEW = ROLLOUT["from_version"], ROLLOUT["to_version"]


def report_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fleetwatch", "report", "drift", *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, **(env or {})})


def copy_of(db: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "sample.duckdb"
    shutil.copyfile(db, target)
    return target


@contextmanager
def served(db: Path):
    """The read API over ``db`` in this process (a token required), on a free port, as the server runs it."""
    con = open_database(str(db))
    config = ApiConfig(endpoint="127.0.0.1:0", timeout=60)
    config.read.bearer_tokens = [TOKEN]
    config.validate()
    pool = ReadPool(con, size=2, queue_limit=4)
    api = ReadApi(config, pool, CATALOG, SqlGuard({"spans"}))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(api.start(), loop).result(30)
        yield f"http://127.0.0.1:{api.port}"
    finally:
        asyncio.run_coroutine_threadsafe(api.stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        pool.close()
        con.close()


@pytest.fixture(scope="module")
def from_file(analysed_sample_db, tmp_path_factory) -> dict:
    """Reports written by the CLI on a copy no server holds: the incident's cohort and the whole model."""
    folder = tmp_path_factory.mktemp("report-db")
    db = copy_of(analysed_sample_db, folder)
    out = {}
    for name, args in (("cohort", ("--cohort", f"site={SITE}")), ("model", ())):
        html = folder / f"{name}.html"
        done = report_cli("--db", str(db), "--model", MODEL, *args, "--out", str(html))
        assert done.returncode == 0, done.stderr
        out[name] = {"stdout": done.stdout, "html": html, "json": html.with_suffix(".json"),
                     "payload": json.loads(html.with_suffix(".json").read_text())}
    return out


def test_the_incident_cohort_report_says_retrain_for_brightness_and_lighting(from_file):
    report = from_file["cohort"]
    payload = report["payload"]
    verdict = payload["verdict"]
    assert verdict["recommendation"] == "retrain" and payload["cohort"] == {"site": SITE}
    assert set(verdict["drifted"]) == SHIFTED
    ranked = [f["name"] for f in payload["features"]]
    assert set(ranked[:len(SHIFTED)]) == SHIFTED
    assert all(f["drifted"] is False for f in payload["features"] if f["name"] in UNCHANGED)
    # the top features carry reference and current shares; lighting's categories are the simulator's
    lighting = next(f for f in payload["features"] if f["name"] == "lighting")
    assert {"daylight", "led", "low"} <= set(lighting["distribution"]["labels"])
    assert payload["drift_over_time"]["windows"] and payload["drift_over_time"]["features"]
    assert report["stdout"].startswith("retrain: drifted features: brightness, lighting")
    # the cohort table names the incident's site first, in both reports
    for name in ("cohort", "model"):
        assert from_file[name]["payload"]["cohorts"][0]["cohort"] == {"site": SITE}
        assert from_file[name]["payload"]["cohorts"][0]["recommendation"] == "retrain"


def _within(measured: float, expected: float, n: int) -> bool:
    return abs(measured - expected) <= Z * math.sqrt(expected * (1 - expected) / n)


def test_the_shadow_section_shows_the_new_version_agreeing_less(from_file):
    shadow = from_file["model"]["payload"]["shadow"]
    assert shadow["status"] == "ok"
    versions = {v["model_version"]: v for v in shadow["versions"]}
    old, new = versions[OLD], versions[NEW]
    assert new["agreement_rate"] < old["agreement_rate"] and new["kappa"] < old["kappa"]
    assert _within(old["agreement_rate"], SHADOW["expected_agreement_before"], old["compared"])
    assert _within(new["agreement_rate"], SHADOW["expected_agreement_after"], new["compared"])
    for v in (old, new):
        assert v["status"] == "ok" and 0.10 < v["coverage"] < 0.20 and v["flips"]
        # the label-free bound is there (the labels measure the cloud's error); its sampling is docs/shadow.md's
        assert v["cloud_error_source"] == "ground_truth" and v["edge_error_lower"] < v["edge_error_upper"]
    truth = {v["model_version"]: v for v in from_file["model"]["payload"]["ground_truth"]["versions"]}
    assert _within(truth[OLD]["accuracy"], SHADOW["edge_accuracy_before"], truth[OLD]["class_labelled"])
    assert _within(truth[NEW]["accuracy"], SHADOW["edge_accuracy_after"], truth[NEW]["class_labelled"])
    assert from_file["model"]["payload"]["ground_truth"]["label_lag"]


def test_the_html_is_self_contained_labels_every_category_and_bounds_underflowed_p_values(from_file):
    html = from_file["cohort"]["html"].read_text()
    assert "<script" not in html and not re.search(r"""(src|href)\s*=|url\(|@import""", html)
    # every category of lighting's chart is labelled (rotated text, the full name in a <title>)
    card = html[html.index(">lighting <span"):]
    card = card[:card.index("</svg>")]
    for category in ("daylight", "led", "low", "(other)"):
        assert f"<title>{category}</title>{category}</text>" in card
    # brightness's KS p-value underflows to 0 on 5,000 values: said as a bound, never "p = 0"
    assert "p = 0 " not in html and "p &lt; 1e-300 &lt;= " in html
    assert from_file["cohort"]["payload"]["features"][0]["p_value"] == 0
    assert "&lt; 1e-300" in html


def test_the_api_and_the_file_give_the_same_report(analysed_sample_db, from_file, tmp_path):
    db = copy_of(analysed_sample_db, tmp_path / "served")
    with served(db) as url:
        html = tmp_path / "api.html"
        done = report_cli("--api", url, "--model", MODEL, "--cohort", f"site={SITE}", "--out", str(html),
                          "--json", str(tmp_path / "api.json"), env={"FLEETWATCH_API_TOKEN": TOKEN})
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "api.json").read_bytes() == from_file["cohort"]["json"].read_bytes()
        assert html.read_bytes() == from_file["cohort"]["html"].read_bytes()
        client = ReadApiClient(url, token=TOKEN)
        assert client.drift_report(MODEL, cohort={"site": SITE}) == html.read_bytes()
        assert json.loads(client.drift_report(MODEL, cohort=f"site={SITE}", format="json")) == \
            from_file["cohort"]["payload"]
        # a file a server holds is refused in one line
        locked = report_cli("--db", str(db), "--model", MODEL, "--out", str(tmp_path / "locked.html"))
        assert locked.returncode == 1 and "already open in another process" in locked.stderr
        assert "Traceback" not in locked.stderr


BAD_REQUESTS = [
    ({"model": "no-such-model"}, 404, "no drift results for model 'no-such-model'"),
    ({"model": MODEL, "cohort": "site=nowhere"}, 404, "no drift results for model 'defect-detector' in cohort"),
    ({"model": MODEL, "window": "2026-11-10T00:00:00Z..2026-11-12T00:00:00Z"}, 404, "in 1h windows between"),
    ({"model": MODEL, "window": "2d"}, 400, "window must be 1h, 1d or START..END"),
    ({"model": MODEL, "window": "2026-11-03T00:00:00Z..2026-11-02T00:00:00Z"}, 400, "is not after"),
    ({"model": MODEL, "cohort": "planet=mars"}, 400, "unknown cohort dimension 'planet'"),
    ({"model": MODEL, "format": "pdf"}, 400, "'pdf' is not one of html, json"),
    ({"model": MODEL, "colour": "red"}, 400, "unknown parameter 'colour'"),
    ({"version": "2.4.0"}, 400, "parameter 'model' is required"),
]


def test_bad_report_parameters_get_a_clear_answer_and_the_server_keeps_serving(analysed_sample_db, tmp_path):
    import urllib.error
    import urllib.parse
    import urllib.request

    db = copy_of(analysed_sample_db, tmp_path)
    with served(db) as url:
        for params, status, message in BAD_REQUESTS:
            request = urllib.request.Request(f"{url}/api/v1/reports/drift?{urllib.parse.urlencode(params)}",
                                             headers={"Authorization": f"Bearer {TOKEN}"})
            with pytest.raises(urllib.error.HTTPError) as failed:
                urllib.request.urlopen(request, timeout=60)
            assert failed.value.code == status, params
            assert message in json.loads(failed.value.read())["error"], params
        with pytest.raises(ApiError) as refused:
            ReadApiClient(url).drift_report(MODEL)
        assert refused.value.status == 401
        assert ReadApiClient(url, token=TOKEN).drift_report(MODEL, window="1h").startswith(b"<!DOCTYPE html>")


def test_an_unknown_model_is_one_line_and_exit_1(analysed_sample_db, tmp_path):
    db = copy_of(analysed_sample_db, tmp_path)
    done = report_cli("--db", str(db), "--model", "no-such-model", "--out", str(tmp_path / "r.html"))
    assert done.returncode == 1
    assert done.stderr == "fleetwatch report drift: no drift results for model 'no-such-model' in 1d windows\n"
    assert not (tmp_path / "r.html").exists()
    bad = report_cli("--db", str(db), "--model", MODEL, "--cohort", "site", "--out", str(tmp_path / "r.html"))
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "KEY=VALUE" in bad.stderr


def test_the_report_opens_in_headless_chromium_without_errors_or_network(from_file, tmp_path):
    from tests.browser import open_page

    html = from_file["cohort"]["html"]
    url = html.resolve().as_uri()
    with open_page(url, allow=[url]) as visit:
        page = visit.page
        page.screenshot(path=str(tmp_path / "drift-report.png"), full_page=True)
        assert page.inner_text(".verdict").startswith("RETRAIN")
        # every chart label is drawn inside its chart (none cut off at an edge)
        outside = page.evaluate("""() => [...document.querySelectorAll('svg text')].filter(t => {
            const box = t.getBoundingClientRect(), svg = t.ownerSVGElement.getBoundingClientRect();
            return box.left < svg.left - 0.5 || box.right > svg.right + 0.5 || box.bottom > svg.bottom + 0.5;
        }).map(t => t.textContent)""")
        assert outside == []
    assert visit.problems() == []
    assert (tmp_path / "drift-report.png").stat().st_size > 10_000


def test_docs_drift_report_section_is_what_the_report_does(from_file):
    from analytics.drift.report import LOOKBACK, MIN_EVENTS, DriftReportRequest
    from analytics.drift.report_html import short_label

    doc = (Path(__file__).resolve().parent.parent / "docs" / "drift.md").read_text()
    section = " ".join(doc.split("## The drift report\n", 1)[1].split("\n## ", 1)[0].split())
    assert f"looking back {LOOKBACK['1d'].days} days (daily) or {LOOKBACK['1h'].days} days (hourly)" in section
    assert f"fewer than {MIN_EVENTS} compared pairs" in section
    assert f"of the {DriftReportRequest('m').top_features} most severe features" in section
    assert len(short_label("x" * 100)) == 14 and "cut to 14 characters" in section
    twin = section.split("The JSON twin has ", 1)[1].split(". Floats", 1)[0]
    top_level = re.findall(r"`(\w+)`(?![^(]*\))", twin)
    assert set(top_level) == set(from_file["model"]["payload"])
    verdict_keys = re.search(r"`verdict` \(([^)]*)\)", twin).group(1)
    assert set(re.findall(r"`(\w+)`", verdict_keys)) == set(from_file["model"]["payload"]["verdict"])
