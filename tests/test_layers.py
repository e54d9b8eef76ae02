"""Layers import downwards only, and a gateway's `fleetwatch serve` loads only what it needs."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("fleetwatch", "collector", "analytics", "dashboards", "sample_data")

# What each layer may import of the project (DESIGN.md's layers). sample_data's
# `simulate --db` hands its log to the collector's bulk loader: that one
# edge beyond the request-log format is allowed by name.
ALLOWED = {
    "collector": {"collector"},
    "analytics": {"analytics", "collector"},
    "dashboards": {"dashboards", "analytics.api.client"},
    "sample_data": {"sample_data", "collector.request_log", "collector.store.bulk"},
    "fleetwatch": set(PACKAGES),
}


def project_imports(path: Path) -> set[str]:
    """Every module of the project that ``path`` imports, at any depth of the file (lazy imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        else:
            continue
        found |= {name for name in names if name.split(".")[0] in PACKAGES}
    return found


def test_every_layer_imports_only_what_is_below_it():
    offences = []
    for package, allowed in ALLOWED.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for module in project_imports(path):
                if not any(module == a or module.startswith(a + ".") for a in allowed):
                    offences.append(f"{path.relative_to(ROOT)} imports {module}")
    assert offences == []


def test_dashboards_read_only_through_the_data_layer():
    """Pages never open a DuckDB file nor call the API client themselves: dashboards/data.py is the one door."""
    offences = []
    for path in sorted((ROOT / "dashboards").rglob("*.py")):
        imported = {module for _, module in imported_modules(ast.parse(path.read_text(), str(path)), "dashboards")}
        if any(m.split(".")[0] in ("duckdb", "collector") for m in imported):
            offences.append(f"{path.relative_to(ROOT)} imports duckdb or the collector")
        if path.name != "data.py" and any(m.startswith("analytics") for m in imported):
            offences.append(f"{path.relative_to(ROOT)} imports {sorted(m for m in imported if m.startswith('analytics'))}")
    assert offences == []


def test_benchmarks_import_no_test_module():
    offences = [f"{path.relative_to(ROOT)}" for path in sorted((ROOT / "bench").rglob("*.py"))
                if any(node.module and node.module.startswith("tests")
                       for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ImportFrom))]
    assert offences == []


def imported_modules(tree: ast.AST, package: str) -> list[tuple[int, str]]:
    """(line, module) for every import in ``tree``, at any depth, relative ones resolved inside ``package``.

    ``from a import b`` yields both ``a`` and ``a.b`` (b may be a module), and a
    string constant that parses as a script with imports (a child process's
    code) counts as code of the same file.
    """
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]) if node.level else ""
            module = ".".join(part for part in (base, node.module) if part)
            found += [(node.lineno, module)] + [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "import" in node.value:
            try:
                script = ast.parse(textwrap.dedent(node.value))
            except SyntaxError:
                continue  # prose, not code
            found += [(node.lineno, module) for _, module in imported_modules(script, package)]
    return found


def test_no_test_or_benchmark_module_imports_a_test_module():
    """Tests share helpers through tests/conftest.py and support modules; a test module is nobody's library."""
    test_modules = {f"tests.{path.stem}" for path in (ROOT / "tests").glob("test_*.py")}
    test_modules |= {name.split(".", 1)[1] for name in test_modules}  # plain `import test_x` off sys.path
    offences = []
    for folder in ("tests", "bench"):
        for path in sorted((ROOT / folder).glob("*.py")):
            for line, module in imported_modules(ast.parse(path.read_text(), str(path)), folder):
                if module in test_modules:
                    offences.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not offences, "import a support module or a conftest.py fixture instead:\n" + "\n".join(offences)


def test_a_gateway_serve_loads_neither_apscheduler_nor_the_simulator(tmp_path):
    """`fleetwatch serve` without an analytics section, run for real until SIGTERM."""
    script = textwrap.dedent(
        f"""
        import json, os, signal, sys, threading, time, urllib.request
        from fleetwatch.cli import main
        from bench.harness import free_port

        http, api = free_port(), free_port()

        def stop_when_ready():
            for _ in range(600):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{{http}}/healthz", timeout=2) as r:
                        if json.loads(r.read())["ready"]:
                            urllib.request.urlopen(f"http://127.0.0.1:{{api}}/api/v1/queries", timeout=5).read()
                            break
                except OSError:
                    pass
                time.sleep(0.1)
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=stop_when_ready, daemon=True).start()
        code = main(["serve", "--db", {str(tmp_path / 'gw.duckdb')!r}, "--http-port", str(http),
                     "--grpc-port", "0", "--api-port", str(api)])
        banned = ("apscheduler", "sample_data", "scipy", "streamlit", "plotly", "polars", "pandas", "dashboards")
        print(code, sorted(m for m in sys.modules if m.split(".")[0] in banned))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "0 []", result.stderr
