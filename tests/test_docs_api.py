"""docs/api.md stays true: every named query is documented with its parameters, every example runs."""

from __future__ import annotations

import re
from pathlib import Path

from analytics.api.catalog import CATALOG
from tests.analytics_data import serve_and_get

DOC = (Path(__file__).parent.parent / "docs" / "api.md").read_text()


def sections() -> dict[str, str]:
    parts = re.split(r"^### `(\w+)`\s*$", DOC, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def examples() -> list[str]:
    blocks = re.findall(r"```http\n(.*?)```", DOC, flags=re.S)
    return [line.split(" ", 1)[1] for block in blocks for line in block.splitlines() if line.startswith("GET ")]


def test_every_named_query_and_parameter_is_documented():
    documented = sections()
    assert set(documented) == set(CATALOG)
    for name, query in CATALOG.items():
        for param in query.params:
            assert f"`{param.name}`" in documented[name], (name, param.name)
            if isinstance(param.default, str):
                assert f"`{param.default}`" in documented[name], (name, param.name, param.default)


def test_every_example_runs(store):
    paths = examples()
    assert {re.match(r"/api/v1/query/(\w+)", p).group(1) for p in paths} == set(CATALOG)
    answers = serve_and_get(store, paths)
    assert all("rows" in answer for answer in answers)
