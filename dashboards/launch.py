"""Serve the dashboards with Streamlit, headless, on the loopback interface, with usage statistics off.

    python -m dashboards --api http://127.0.0.1:4319 --port 8501     # FLEETWATCH_API_TOKEN for the token
    argv = streamlit_argv("http://127.0.0.1:4319", port=8501)        # to start it as a child process:
    subprocess.Popen([sys.executable, "-m", "streamlit", *argv])     # the token goes through the environment

The flags are passed on the command line rather than in a ``.streamlit/config.toml``
because Streamlit reads that file from the working directory, which is not ours
to choose; ``browser.gatherUsageStats=false`` is what keeps Streamlit from
reaching the internet.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

APP = Path(__file__).resolve().parent / "app.py"


def streamlit_argv(api_url: str, *, port: int = 8501, address: str = "127.0.0.1") -> list[str]:
    """``streamlit`` arguments (after the program name) that serve the app against ``api_url``."""
    return ["run", str(APP), "--server.headless=true", f"--server.address={address}", f"--server.port={port}",
            "--browser.gatherUsageStats=false", "--server.fileWatcherType=none", "--global.developmentMode=false",
            "--client.toolbarMode=minimal",
            "--", "--api", api_url]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards", description=__doc__.splitlines()[0])
    parser.add_argument("--api", default=os.environ.get("FLEETWATCH_API_URL", "http://127.0.0.1:4319"),
                        help="the read API (default: FLEETWATCH_API_URL or http://127.0.0.1:4319)")
    parser.add_argument("--port", type=int, default=8501)
    parser.add_argument("--address", default="127.0.0.1")
    args = parser.parse_args(argv)
    from streamlit.web import cli as streamlit_cli

    sys.argv = ["streamlit", *streamlit_argv(args.api, port=args.port, address=args.address)]
    return streamlit_cli.main()
