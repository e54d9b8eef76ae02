"""``fleetwatch simulate``: generate fleet telemetry with known incidents.

Three outputs (exactly one)::

    fleetwatch simulate --out fleet.otlp.zst                 # request log (bulk, offline)
    fleetwatch simulate --db fleet.duckdb                    # bulk into DuckDB via the collector
    fleetwatch simulate --endpoint http://127.0.0.1:4318 --protocol http --speed 60   # live OTLP

The defaults are the shipped sample's settings (200 devices, 48 hours, seed
7, ...); ``sample_data/REGENERATE`` holds the exact command. The same
options give the same bytes. ``python -m sample_data`` is the same command
without the ``fleetwatch`` entry point.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import sys
import textwrap
import time

from .generator import DEFAULT_START_NS, HOUR, SimConfig, omitted_incidents
from .incidents import KINDS, iso
from .progress import progress_reporter

NS = 1_000_000_000
SAMPLE_DEFAULTS = {
    "devices": 200,
    "duration": "48h",
    "seed": 7,
    "inferences_per_hour": 16.0,
    "stage_ratio": 0.25,
    "shadow_ratio": 0.15,
    "label_ratio": 0.05,
    "export_interval": 300,
    "metric_interval": 600,
    "level": 10,
}
_UNITS = {"s": NS, "m": 60 * NS, "h": HOUR, "d": 24 * HOUR}


def parse_duration(text: str) -> int:
    """"48h", "90m", "2d", "3600s" or "3600" (seconds) -> nanoseconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use e.g. 48h, 90m, 2d, 3600s)")
    value = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    if value <= 0:
        raise argparse.ArgumentTypeError("duration must be positive")
    return int(value)


def format_duration(ns: int) -> str:
    for unit in ("h", "m"):
        if ns % _UNITS[unit] == 0:
            return f"{ns // _UNITS[unit]}{unit}"
    return f"{ns // NS}s" if ns % NS == 0 else f"{ns / NS}s"


def parse_start(text: str) -> int:
    """ISO-8601 (naive = UTC) or unix seconds -> nanoseconds."""
    try:
        return int(float(text) * NS)
    except ValueError:
        pass
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a time: {text!r} (use e.g. 2026-11-02T00:00:00Z)") from exc
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return int(t.timestamp()) * NS + t.microsecond * 1000


def parse_incidents(text: str) -> tuple[str, ...]:
    text = text.strip()
    if text == "all":
        return KINDS
    if text in ("none", ""):
        return ()
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown incident kind(s) {', '.join(unknown)}; known: {', '.join(KINDS)}")
    return tuple(k for k in KINDS if k in kinds)  # canonical order


def build_parser() -> argparse.ArgumentParser:
    d = SAMPLE_DEFAULTS
    p = argparse.ArgumentParser(
        prog="fleetwatch simulate",
        description="Simulate an edge-AI fleet's OpenTelemetry telemetry with injected, documented incidents.",
    )
    g = p.add_argument_group("fleet and run")
    g.add_argument("--devices", type=int, default=d["devices"], help="number of devices (default %(default)s)")
    g.add_argument("--duration", type=parse_duration, default=parse_duration(d["duration"]),
                   help=f"simulated time, e.g. 48h, 90m, 2d (default {d['duration']})")
    g.add_argument("--seed", type=int, default=d["seed"], help="random seed (default %(default)s)")
    g.add_argument("--start", type=parse_start, default=None,
                   help="simulated start time, ISO-8601 UTC or unix seconds (default: "
                        f"{iso(DEFAULT_START_NS)} for --out/--db; live: now at --speed 1, "
                        "otherwise now minus the duration so nothing lies in the future)")
    g.add_argument("--incidents", type=parse_incidents, default=KINDS,
                   help="'all' (default), 'none' or a comma list of: " + ", ".join(KINDS))
    g.add_argument("--inferences-per-hour", type=float, default=d["inferences_per_hour"],
                   help="mean emitted inference spans per device-hour (the sampling rate; default %(default)s)")
    g.add_argument("--stage-ratio", type=float, default=d["stage_ratio"],
                   help="share of inferences with preprocess/execute/postprocess child spans; failed ones "
                        "always have them (default %(default)s)")
    g.add_argument("--shadow-ratio", type=float, default=d["shadow_ratio"],
                   help="share of successful edge inferences also answered by the cloud (default %(default)s)")
    g.add_argument("--label-ratio", type=float, default=d["label_ratio"],
                   help="share of successful edge inferences that get a late ground-truth label "
                        "(default %(default)s)")
    g.add_argument("--export-interval", type=int, default=d["export_interval"], metavar="SECONDS",
                   help="how often each device exports its spans (default %(default)s)")
    g.add_argument("--metric-interval", type=int, default=d["metric_interval"], metavar="SECONDS",
                   help="how often each device collects metrics; a multiple of the export interval "
                        "(default %(default)s)")
    o = p.add_argument_group("output (exactly one of --out, --db, --endpoint)")
    x = o.add_mutually_exclusive_group()
    x.add_argument("--out", metavar="FILE", help="write a request log (zstd) to FILE")
    x.add_argument("--db", metavar="PATH", help="bulk-load into a DuckDB file through the collector's ingest path")
    x.add_argument("--endpoint", metavar="URL", help="send live OTLP to a collector, e.g. http://127.0.0.1:4318")
    o.add_argument("--manifest", metavar="PATH",
                   help="ground-truth manifest (default: FILE.manifest.json / PATH.manifest.json; "
                        "live: only when given)")
    o.add_argument("--protocol", choices=("http", "grpc"), default="http", help="live: OTLP transport")
    o.add_argument("--speed", type=float, default=1.0,
                   help="live: simulated seconds per wall second (1 = real time, 0 = as fast as possible)")
    o.add_argument("--timeout", type=float, default=10.0, help="live: export timeout in seconds")
    o.add_argument("--level", type=int, default=d["level"], help="--out: zstd level (default %(default)s)")
    pr = o.add_mutually_exclusive_group()
    pr.add_argument("--progress", dest="progress", action="store_true", default=None,
                    help="a progress bar even without a terminal (default: a bar on a terminal, "
                         "periodic lines on stderr otherwise)")
    pr.add_argument("--no-progress", dest="progress", action="store_false", help="no progress output")
    p.add_argument("--list-incidents", action="store_true", help="print the incident kinds and exit")
    return p


def regeneration_options(cfg: SimConfig, level: int) -> list[str]:
    """The options that reproduce ``cfg`` (everything explicit, no defaults relied on)."""
    incidents = "all" if cfg.incidents == KINDS else (",".join(cfg.incidents) or "none")
    return [
        "--devices", str(cfg.devices),
        "--duration", format_duration(cfg.duration_ns),
        "--seed", str(cfg.seed),
        "--start", iso(cfg.start_ns),
        "--incidents", incidents,
        "--inferences-per-hour", repr(cfg.inferences_per_hour),
        "--stage-ratio", repr(cfg.stage_ratio),
        "--shadow-ratio", repr(cfg.shadow_ratio),
        "--label-ratio", repr(cfg.label_ratio),
        "--export-interval", str(cfg.export_interval_s),
        "--metric-interval", str(cfg.metric_interval_s),
        "--level", str(level),
    ]


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries whose releases can change the sample's bytes."""
    out = {}
    for name in ("opentelemetry-sdk", "opentelemetry-proto", "numpy", "zstandard", "protobuf"):
        try:
            from importlib.metadata import version

            out[name] = version(name)
        except Exception:  # noqa: BLE001 - informational only
            out[name] = None
    return out


def incident_kinds_text() -> str:
    """The incident catalogue of :mod:`sample_data.incidents` as plain text (no reST markup)."""
    from . import incidents

    text = incidents.__doc__.split("Kinds (``KINDS``)", 1)[1].split("\n\n", 1)[1].rstrip()
    text = re.sub(r":\w+:`~?([^`]+)`", r"\1", text).replace("``", "")
    table, *notes = text.split("\n\n")
    entries: list[list[str]] = []  # [kind, description]; a description's later lines are indented
    for line in table.splitlines():
        if line[:1].isspace():
            entries[-1][1] += " " + line.strip()
        else:
            entries.append(line.split(None, 1))
    width = max(len(kind) for kind, _ in entries) + 2
    kinds = [textwrap.fill(desc, 100, initial_indent=kind.ljust(width), subsequent_indent=" " * width)
             for kind, desc in entries]
    return "\n".join(kinds) + "".join("\n\n" + textwrap.fill(" ".join(n.split()), 100) for n in notes)


def ingest_summary(db: str, counts: dict) -> str:
    """The collector's ingest counts in words."""
    text = (f"loaded {counts.get('spans', 0):,} spans and {counts.get('points', 0):,} metric points "
            f"from {counts.get('requests', 0):,} requests into {db}")
    problems = [f"{counts[key]:,} {what}" for key, what in
                (("rejected", "items rejected"), ("duplicates", "duplicate requests skipped"),
                 ("bad_requests", "bad requests")) if counts.get(key)]
    return text + (f" ({', '.join(problems)})" if problems else "")


def _missing_directory(paths: list[str | None]) -> str | None:
    """A one-line error for the first output path whose directory does not exist."""
    for path in paths:
        if path:
            directory = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(directory):
                return f"cannot write {path}: directory {directory} does not exist"
    return None


def _write_manifest(manifest: dict, path: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_incidents:
        print(incident_kinds_text())
        return 0
    if not (args.out or args.db or args.endpoint):
        parser.error("one of --out FILE, --db PATH or --endpoint URL is required")

    start = args.start
    if start is None:
        if args.endpoint:
            now = time.time_ns()
            start = now if args.speed == 1 else now - args.duration
            start -= start % NS
        else:
            start = DEFAULT_START_NS
    cfg = SimConfig(
        seed=args.seed, devices=args.devices, start_ns=start, duration_ns=args.duration,
        export_interval_s=args.export_interval, metric_interval_s=args.metric_interval,
        inferences_per_hour=args.inferences_per_hour, shadow_ratio=args.shadow_ratio,
        label_ratio=args.label_ratio, stage_ratio=args.stage_ratio, incidents=args.incidents,
    )
    try:
        cfg.validate()
    except ValueError as exc:
        parser.error(str(exc))
    missing = _missing_directory([args.out, args.db, args.manifest])
    if missing:
        print(f"fleetwatch simulate: {missing}", file=sys.stderr)
        return 1
    # the manifest is the answer key: say which asked-for incidents this run is too small to show
    for kind, reason in omitted_incidents(cfg).items():
        print(f"fleetwatch simulate: no {kind} incident in this run: {reason}", file=sys.stderr)

    t0 = time.perf_counter()
    try:
        if args.endpoint:
            from .live import LiveRunner

            runner = LiveRunner(cfg, args.endpoint, args.protocol, args.speed, timeout=args.timeout)
            bar = progress_reporter(runner.sim.n_ticks, "live", args.progress)
            try:
                result = runner.run(bar.update if bar else None)
            finally:
                if bar is not None:
                    bar.close()
            manifest = result.pop("manifest")
            manifest["live"] = {"endpoint": args.endpoint, "protocol": args.protocol, "speed": args.speed}
            if args.speed != 1:
                # the gateway stamps received_at with its wall clock: the incidents' times are simulated ones
                manifest["live"]["received_at"] = (
                    "the gateway's wall clock, not the simulated one: lateness (site_offline) and "
                    "received_at - end_time (clock_skew) are compressed; verify those on a bulk run")
            if args.manifest:
                _write_manifest(manifest, args.manifest)
            sent, failed = result["sent"], result["failed"]
            print(f"fleetwatch simulate: sent {sent.get('traces', 0):,} trace and {sent.get('metrics', 0):,} metric "
                  f"requests to {args.endpoint} in {time.perf_counter() - t0:.1f}s, "
                  f"{sum(failed.values()):,} failed; at most {result['max_lag_s']:.1f}s behind the "
                  "simulated clock", file=sys.stderr)
            return 0 if not any(result["failed"].values()) else 1

        options = regeneration_options(cfg, args.level)
        if args.out:
            from .bulk import write_request_log

            manifest = write_request_log(cfg, args.out, level=args.level, progress=args.progress)
            manifest_path = args.manifest or args.out + ".manifest.json"
            target = ["--out", os.path.basename(args.out), "--manifest", os.path.basename(manifest_path)]
        else:
            from .bulk import ingest_into_duckdb

            result = ingest_into_duckdb(cfg, args.db, progress=args.progress)
            manifest = result["manifest"]
            manifest["ingest"] = result["ingest"]
            manifest_path = args.manifest or args.db + ".manifest.json"
            target = ["--db", os.path.basename(args.db), "--manifest", os.path.basename(manifest_path)]
        manifest["generator"] = {
            "command": " ".join(["fleetwatch", "simulate", *options, *target]),
            "options": options,
            "note": "run from the directory that holds the files; same options, same bytes "
                    "(with the library versions below)",
            "versions": library_versions(),
        }
        _write_manifest(manifest, manifest_path)
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"fleetwatch simulate: {exc}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - t0
    if args.out:
        data = manifest["data"]
        print(f"fleetwatch simulate: wrote {args.out} ({data['bytes'] / 1e6:.1f} MB, "
              f"{data['records']['traces']} trace and {data['records']['metrics']} metric requests) "
              f"and {manifest_path} in {elapsed:.1f}s", file=sys.stderr)
    else:
        print(f"fleetwatch simulate: {ingest_summary(args.db, manifest['ingest'])} in {elapsed:.1f}s; "
              f"manifest {manifest_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
