"""collector.decoding._speedups for tests, built in place when missing or older than its source.

Tests take the ``speedups`` or ``c_decode`` fixture (tests/conftest.py), which
skips without a C compiler and fails when the build fails; a module that needs
the extension at import time calls ``load_speedups()`` itself::

    _speedups, build_error = load_speedups()  # (module, None) or (None, why not)

The build runs at most once per process.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


@functools.cache
def load_speedups() -> tuple[ModuleType | None, str | None]:
    src = ROOT / "collector" / "decoding" / "_speedups.c"
    built = [p for p in (ROOT / "collector" / "decoding").glob("_speedups*") if p.suffix in (".so", ".pyd")]
    if not built or max(p.stat().st_mtime for p in built) < src.stat().st_mtime:
        if not (shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")):
            return None, "no C compiler to build collector.decoding._speedups"
        proc = subprocess.run(
            [sys.executable, "setup.py", "build_ext", "--inplace"], cwd=ROOT, capture_output=True, text=True, timeout=600
        )
        if proc.returncode != 0:
            return None, "build failed:\n" + proc.stdout[-3000:] + proc.stderr[-3000:]
    try:
        from collector.decoding import _speedups
    except ImportError as exc:
        return None, f"import failed: {exc}"
    return _speedups, None
