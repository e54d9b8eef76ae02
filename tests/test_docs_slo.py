"""docs/slo.md stays true: every YAML example loads, the rule tables are what the code computes."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from analytics.slo.openslo import slos_from_openslo
from analytics.slo.payload import format_duration
from analytics.slo.rules import alert_windows
from analytics.slo.spec import slos_from_dict

DOC = (Path(__file__).resolve().parent.parent / "docs" / "slo.md").read_text()
EXAMPLES = re.findall(r"```yaml\n(.*?)```", DOC, flags=re.S)


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_every_example_loads(index):
    data = yaml.safe_load(EXAMPLES[index])
    specs = slos_from_openslo([data]) if "apiVersion" in data else slos_from_dict(data)
    assert specs and all(s.name for s in specs)


def test_examples_cover_every_sli_kind_and_openslo():
    kinds = {s.sli.kind for block in EXAMPLES if "apiVersion" not in block
             for s in slos_from_dict(yaml.safe_load(block))}
    assert kinds == {"success", "latency", "freshness", "deployment"}
    assert any("apiVersion: openslo/v1" in block for block in EXAMPLES)


@pytest.mark.parametrize("days", [30, 28, 7])
def test_rule_tables_match_the_code(days):
    section = DOC.split(f"### {days}d\n", 1)[1].split("###", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| page") or line.startswith("| ticket")]
    expected = [f"| {r.severity} | {r.speed} | {format_duration(r.long_window)} | {format_duration(r.short_window)} "
                f"| {r.budget_share * 100:g} % | {r.factor:.4g} |" for r in alert_windows(timedelta(days=days)).rules]
    assert rows == expected

