"""Benchmark ``GET /v2/projects?limit=50`` against a bare Starlette route on the same database.

Run from the repository root with PostgreSQL and Redis on 127.0.0.1:

    .venv/bin/python -m bench.core_rest

The script creates and migrates the benchmark database, reseeds it with one
organization, 200 active projects and a projects:read key, and starts two
single-worker uvicorn servers: ConneX (key admission, rate limit and usage metering
in Redis) and ``bench.bare_app``. The key's own limit (``--rate-limit``) is high
enough that no request is rejected, so every request runs the whole path.
wrk then loads each server in turn, at 32 connections and at 1, for several
runs. The script prints a markdown table of the medians over the runs and writes
the raw figures and server logs to ``bench/results/core_rest-<UTC time>/``.

The database name must contain "bench", because seeding truncates its tables.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bench import procstat, pyspy, servers
from bench.environment import (
    SetupError,
    asyncpg_url,
    describe_machine,
    describe_source,
    ensure_database,
)
from bench.servers import Server, ServerError
from bench.wrk import (
    WrkError,
    WrkResult,
    find_wrk,
    run_wrk,
    write_header_script,
    wrk_version,
)
from connex.apikeys import issue_key
from connex.db import Database, utcnow
from connex.ids import new_id
from connex.migrate import upgrade
from connex.models import Organization, Project, ProjectStatus
from connex.scopes import Scope

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/connex_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/1"
RESULTS_DIR = servers.REPOSITORY / "bench" / "results"

PROJECT_COUNT = 200
PAGE_SIZE = 50
REQUEST_PATH = f"/v2/projects?limit={PAGE_SIZE}"
CONNECTION_COUNTS = (32, 1)
SEEDED_TABLES = ("events", "projects", "api_keys", "organizations")
# The benchmark key's limit per minute. At 1,000 requests per second a window contains
# 60,000 admissions, so this limit never rejects one.
DEFAULT_RATE_LIMIT = 10_000_000

# Targets for the full path: at least half the bare route's throughput at 32
# connections, and a p99 latency of at most three times the p50.
TARGET_THROUGHPUT_RATIO = 0.5
TARGET_TAIL_RATIO = 3.0

SERVER_NAMES = ("full", "bare")

# Request phases for the profile report, as (phase, text of a frame). A sample belongs to
# the first phase with a frame in its stack, so a phase nested inside another comes first.
# SQLAlchemy runs its synchronous code in greenlets, whose stacks do not reach the request's
# frames; the "(sqlalchemy/" rule puts them under the database phase.
PHASES = (
    ("database: pool pre-ping", "_async_ping ("),
    ("admission: key cache, rate limit and last use (Redis)", "KeyAdmission.admit ("),
    ("usage metering: counting, flush and rollup", "UsageMeter.record ("),
    ("usage metering: counting, flush and rollup", "PeriodicJob.run_once ("),
    ("rows to v2 JSON objects", "compile_serializer.<locals>.serialize_list ("),
    ("rows to v2 JSON objects", "list_projects.<locals>.<listcomp> (bench/"),
    ("response: Response object and send", "(starlette/responses.py"),
    ("database: statement, execution, session, asyncpg", "list_projects ("),
    ("database: statement, execution, session, asyncpg", "(sqlalchemy/"),
    ("GraphQL argument coercion and Strawberry resolver call", "_resolve_root ("),
    ("REST parameter binding", "bind (rest_compat/executor.py"),
    ("response: Response object and send", "VersionApp.respond ("),
    ("middleware and routing", "RequestResponseCycle.run_asgi ("),
    ("socket reads and HTTP parsing (h11)", "_read_ready ("),
    ("event loop and other", ""),
)


class BenchmarkError(RuntimeError):
    """Failure to run the benchmark, or figures that cannot be compared."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.core_rest", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help="PostgreSQL database to create, migrate and reseed (default: %(default)s)",
    )
    parser.add_argument(
        "--redis-url",
        default=DEFAULT_REDIS_URL,
        help="Redis database for ConneX's key cache, rate limits and usage counters"
        " (default: %(default)s)",
    )
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=DEFAULT_RATE_LIMIT,
        help="requests per minute allowed to the benchmark key; the default never rejects"
        " (default: %(default)s)",
    )

    parser.add_argument(
        "--runs",
        type=int,
        default=3,
        help="measured runs per server and load (default: %(default)s)",
    )
    parser.add_argument(
        "--duration",
        type=int,
        default=10,
        help="seconds of each measured load (default: %(default)s)",
    )
    parser.add_argument(
        "--warm-up",
        type=int,
        default=2,
        help="seconds of unrecorded load before each measured load (default: %(default)s)",
    )

    parser.add_argument(
        "--server-cpu",
        type=int,
        default=0,
        help="CPU to pin both servers to with taskset (default: %(default)s)",
    )
    parser.add_argument(
        "--client-cpu",
        type=int,
        default=1,
        help="CPU to pin wrk to with taskset (default: %(default)s)",
    )
    parser.add_argument("--no-pin", action="store_true", help="run servers and wrk without taskset")

    parser.add_argument(
        "--max-other-cpu",
        type=float,
        default=0.2,
        metavar="CPUS",
        help="repeat a load during which processes outside the benchmark used more CPU"
        " than this, in CPUs (default: %(default)s)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=3,
        help="maximum repeats of one disturbed load (default: %(default)s)",
    )

    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="SECONDS",
        help="after the runs, sample each server with py-spy for this many seconds"
        " under 32-connection load; 0 skips profiling (default: %(default)s)",
    )

    args = parser.parse_args(argv)
    if args.runs < 1 or args.duration < 1:
        parser.error("--runs and --duration must be at least 1")
    if args.warm_up < 0 or args.profile < 0 or args.retries < 0:
        parser.error("--warm-up, --profile and --retries must not be negative")
    return args


# Seed data.


@dataclass(frozen=True)
class Seed:
    organization_id: str
    api_key: str
    postgresql_version: str


async def seed(url: str, secret_key: bytes, rate_limit: int) -> Seed:
    """Replace the benchmark data: one organization, its projects and one projects:read key."""
    db = Database(url)
    try:
        async with db.engine.begin() as connection:
            await connection.execute(text(f"TRUNCATE {', '.join(SEEDED_TABLES)} CASCADE"))
            version = (await connection.execute(text("SHOW server_version"))).scalar_one()

        now = utcnow()
        organization = Organization(id=new_id("org"), slug="bench", name="Benchmark organization")
        # Distinct update times give the list one fixed order.
        projects = [
            Project(
                id=new_id("proj"),
                organization_id=organization.id,
                name=f"Benchmark project {index:03d}",
                description=f"Seeded project number {index} for the core REST benchmark.",
                status=ProjectStatus.ACTIVE,
                created_at=now - timedelta(hours=1, seconds=index),
                updated_at=now - timedelta(seconds=index),
            )
            for index in range(PROJECT_COUNT)
        ]
        async with db.transaction() as session:
            session.add(organization)
            await session.flush()
            session.add_all(projects)
            _, key = await issue_key(
                session,
                secret_key,
                name="core REST benchmark",
                organization_id=organization.id,
                scopes=frozenset({Scope.PROJECTS_READ}),
                rate_limit_per_minute=rate_limit,
            )
    finally:
        await db.dispose()
    return Seed(organization.id, str(key), version)


# Servers and load.


def start_servers(
    args: argparse.Namespace, url: str, organization_id: str, secret_key: str, log_dir: Path
) -> dict[str, Server]:
    """Start the ConneX server and the bare server and wait until both return 200 on /healthz."""
    cpu = None if args.no_pin else args.server_cpu
    base_env = {key: value for key, value in os.environ.items() if not key.startswith("CONNEX_")}
    full_env = {
        **base_env,
        "CONNEX_DATABASE_URL": args.database_url,
        "CONNEX_SECRET_KEY": secret_key,
        "CONNEX_REDIS_URL": args.redis_url,
        "CONNEX_LOG_LEVEL": "WARNING",
    }
    bare_env = {
        **base_env,
        "CONNEX_BENCH_DATABASE_URL": url,
        "CONNEX_BENCH_ORGANIZATION_ID": organization_id,
    }
    started: dict[str, Server] = {}
    try:
        started["full"] = servers.start_uvicorn(
            "full", "connex.app:create_app", full_env, log_dir, cpu
        )
        started["bare"] = servers.start_uvicorn(
            "bare", "bench.bare_app:create_app", bare_env, log_dir, cpu
        )
        for server in started.values():
            servers.wait_ready(server)
    except BaseException:
        for server in started.values():
            servers.stop(server)
        raise
    return started


def check_responses(started: dict[str, Server], headers: dict[str, str]) -> dict[str, int]:
    """Check that both servers return 200 and the same page, and return each body's size.

    Sizes are in bytes.
    """
    bodies = {}
    sizes = {}
    for name, server in started.items():
        response = httpx.get(server.base_url + REQUEST_PATH, headers=headers, timeout=10.0)
        if response.status_code != 200:
            raise BenchmarkError(
                f"the {name} server returned {response.status_code} for {REQUEST_PATH}:"
                f" {response.text[:500]}"
            )
        if name == "full" and "ratelimit" not in response.headers:
            raise BenchmarkError("the full server sent no RateLimit header, so it did not rate-limit")
        body = response.json()
        if len(body.get("data", [])) != PAGE_SIZE or body.get("next_cursor") is None:
            raise BenchmarkError(
                f"the {name} server did not return a full first page of {PAGE_SIZE}"
            )
        bodies[name] = body
        sizes[name] = len(response.content)
    if bodies["full"] != bodies["bare"]:
        raise BenchmarkError("the full and bare servers returned different pages")
    return sizes


def measure(
    started: dict[str, Server],
    name: str,
    args: argparse.Namespace,
    wrk: str,
    script: Path,
    connections: int,
) -> dict[str, Any]:
    """Warm up, then run one measured load and return wrk's figures with the CPU use.

    Besides the server's own CPU time, the result contains the CPU seconds of every
    process on the machine, so that load from unrelated processes shows up.
    """
    server = started[name]
    cpu = None if args.no_pin else args.client_cpu
    url = server.base_url + REQUEST_PATH
    if args.warm_up:
        run_wrk(wrk, url, connections=connections, duration_s=args.warm_up, script=script, cpu=cpu)
    database = make_url(args.database_url).database or ""
    processes_before = procstat.snapshot(database)
    steal_before = procstat.steal_seconds()
    cpu_before = server.cpu_seconds()
    result, report = run_wrk(
        wrk, url, connections=connections, duration_s=args.duration, script=script, cpu=cpu
    )
    cpu_used = server.cpu_seconds() - cpu_before
    steal = procstat.steal_seconds() - steal_before
    names = {other.pid: f"{other.name} server" for other in started.values()}
    names[os.getpid()] = "benchmark runner"
    cpu_by_process = procstat.cpu_by_label(processes_before, procstat.snapshot(database), names)
    expected = {*names.values(), f"postgres ({database})", "redis-server"}
    other_cpu = sum(seconds for label, seconds in cpu_by_process.items() if label not in expected)
    if result.non_2xx or any(result.socket_errors.values()):
        raise BenchmarkError(
            f"wrk saw {result.non_2xx} non-2xx responses and socket errors"
            f" {result.socket_errors} from the {server.name} server; report:\n{report}"
        )
    return {
        "server": server.name,
        **result.as_dict(),
        "server_cpu_s": round(cpu_used, 3),
        "server_cpu_ms_per_request": round(1000 * cpu_used / result.requests, 4),
        "server_cpu_share": round(cpu_used / result.duration_s, 3),
        # CPU seconds per process during the load; "other" is what the benchmark did not cause.
        "cpu_by_process_s": cpu_by_process,
        "other_cpu_cores": round(other_cpu / result.duration_s, 2),
        "steal_cpu_cores": round(steal / result.duration_s, 2),
        "report": report,
    }


def run_loads(
    started: dict[str, Server], args: argparse.Namespace, wrk: str, script: Path
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run every load and return the kept measurements and those discarded as disturbed.

    Odd runs start with the full server, even runs with the bare one. A load is
    disturbed if other processes used more than ``--max-other-cpu`` CPUs during it.
    A disturbed load is repeated up to ``--retries`` times, and the last attempt is
    kept even if it is disturbed too.
    """
    measurements = []
    discarded = []
    for run in range(args.runs):
        order = SERVER_NAMES if run % 2 == 0 else tuple(reversed(SERVER_NAMES))
        for connections in CONNECTION_COUNTS:
            for name in order:
                for attempt in range(args.retries + 1):
                    measurement = measure(started, name, args, wrk, script, connections)
                    measurement["run"] = run + 1
                    measurement["disturbed"] = measurement["other_cpu_cores"] > args.max_other_cpu
                    print(
                        f"run {run + 1} {name:<4} c={connections:<2}"
                        f" {measurement['requests_per_s']:8.1f} req/s"
                        f" p50 {measurement['p50_ms']:7.2f} ms p99 {measurement['p99_ms']:7.2f} ms"
                        f" (other processes: {measurement['other_cpu_cores']:.2f} CPUs)",
                        flush=True,
                    )
                    if not measurement["disturbed"] or attempt == args.retries:
                        break
                    print("  discarded as disturbed; repeating", flush=True)
                    discarded.append(measurement)
                measurements.append(measurement)
    return measurements, discarded


def profile_server(
    server: Server, args: argparse.Namespace, wrk: str, script: Path, out_dir: Path
) -> str:
    """Sample one server with py-spy under 32-connection load and return the markdown summary."""
    cpu = None if args.no_pin else args.client_cpu
    loads: list[WrkResult] = []

    def load() -> None:
        result, _ = run_wrk(
            wrk,
            server.base_url + REQUEST_PATH,
            connections=32,
            duration_s=args.profile + 2,
            script=script,
            cpu=cpu,
        )
        loads.append(result)

    # The load starts a second before sampling and ends a second after it.
    cpu_before = server.cpu_seconds()
    loader = threading.Thread(target=load)
    loader.start()
    collapsed = out_dir / f"{server.name}-profile.txt"
    try:
        threading.Event().wait(1.0)
        pyspy.record(server.pid, args.profile, collapsed)
    finally:
        loader.join()
    if not loads or loads[0].non_2xx or any(loads[0].socket_errors.values()):
        raise BenchmarkError(f"the load on the {server.name} server failed while it was profiled")
    cpu_ms_per_request = 1000 * (server.cpu_seconds() - cpu_before) / loads[0].requests

    title = f"{server.name} server, 32 connections, {args.profile} s"
    lines = [
        pyspy.format_summary(title, pyspy.summarize(collapsed)),
        "#### Samples by request phase",
        "",
        (
            f"The server used {cpu_ms_per_request:.3f} ms of CPU per request during this load;"
            " the estimate splits that time by the phase's share of the samples."
        ),
        "",
        "| Phase | Share | Estimated CPU per request (ms) |",
        "|---|---:|---:|",
    ]
    phases = sorted(pyspy.share_by_rules(collapsed, PHASES), key=lambda row: row[2], reverse=True)
    for phase, _, share in phases:
        lines.append(f"| {phase} | {share:.1f}% | {share * cpu_ms_per_request / 100:.3f} |")
    return "\n".join(lines) + "\n"


# Results.


def summarize(
    measurements: list[dict[str, Any]], discarded: list[dict[str, Any]]
) -> dict[str, Any]:
    """Take the median of each figure over the runs, per server and connection count."""
    medians: dict[str, dict[int, dict[str, float]]] = {}
    for name in SERVER_NAMES:
        medians[name] = {}
        for connections in CONNECTION_COUNTS:
            runs = [
                m for m in measurements if m["server"] == name and m["connections"] == connections
            ]
            medians[name][connections] = {
                figure: statistics.median(m[figure] for m in runs)
                for figure in (
                    "requests_per_s",
                    "p50_ms",
                    "p99_ms",
                    "max_ms",
                    "server_cpu_ms_per_request",
                    "server_cpu_share",
                )
            }
    full, bare = medians["full"], medians["bare"]
    throughput_ratio = full[32]["requests_per_s"] / bare[32]["requests_per_s"]
    tail_ratios = {c: full[c]["p99_ms"] / full[c]["p50_ms"] for c in CONNECTION_COUNTS}
    other_cpu = [m["other_cpu_cores"] for m in measurements]
    return {
        "medians": medians,
        "other_cpu_cores": {"median": statistics.median(other_cpu), "max": max(other_cpu)},
        "discarded_loads": len(discarded),
        "disturbed_loads_kept": sum(1 for m in measurements if m["disturbed"]),
        "throughput_ratio": throughput_ratio,
        "throughput_target_met": throughput_ratio >= TARGET_THROUGHPUT_RATIO,
        "full_tail_ratios": tail_ratios,
        "full_tail_target_met": {c: ratio <= TARGET_TAIL_RATIO for c, ratio in tail_ratios.items()},
    }


def format_table(summary: dict[str, Any], runs: int) -> str:
    lines = [
        f"Medians of {runs} runs.",
        "",
        (
            "| Server | Connections | Requests/s | p50 (ms) | p99 (ms) | p99/p50 | Max (ms)"
            " | Server CPU per request (ms) | Server CPU busy |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for connections in CONNECTION_COUNTS:
        for name in SERVER_NAMES:
            figures = summary["medians"][name][connections]
            lines.append(
                f"| {name} | {connections} | {figures['requests_per_s']:.0f}"
                f" | {figures['p50_ms']:.2f} | {figures['p99_ms']:.2f}"
                f" | {figures['p99_ms'] / figures['p50_ms']:.2f} | {figures['max_ms']:.2f}"
                f" | {figures['server_cpu_ms_per_request']:.3f}"
                f" | {100 * figures['server_cpu_share']:.0f}% |"
            )
    ratio = summary["throughput_ratio"]
    met = "met" if summary["throughput_target_met"] else "missed"
    lines += [
        "",
        (
            f"- Throughput full/bare at 32 connections: {ratio:.2f}"
            f" (target ≥ {TARGET_THROUGHPUT_RATIO:.2f}): {met}."
        ),
    ]
    for connections in CONNECTION_COUNTS:
        tail = summary["full_tail_ratios"][connections]
        met = "met" if summary["full_tail_target_met"][connections] else "missed"
        lines.append(
            f"- Full path p99/p50 at {connections} connection{'s' if connections > 1 else ''}:"
            f" {tail:.2f} (target ≤ {TARGET_TAIL_RATIO:.0f}): {met}."
        )
    other = summary["other_cpu_cores"]
    lines.append(
        f"- Processes outside the benchmark used a median of {other['median']:.2f} CPUs"
        f" (max {other['max']:.2f}) during the kept loads; {summary['discarded_loads']} loads"
        f" were repeated because of such use, and {summary['disturbed_loads_kept']} kept loads"
        " still had it."
    )
    return "\n".join(lines)


def format_runs(measurements: list[dict[str, Any]]) -> str:
    lines = [
        (
            "| Run | Server | Connections | Requests/s | p50 (ms) | p99 (ms) | Max (ms)"
            " | Requests | CPUs used by other processes |"
        ),
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in measurements:
        lines.append(
            f"| {m['run']} | {m['server']} | {m['connections']} | {m['requests_per_s']:.0f}"
            f" | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | {m['max_ms']:.2f} | {m['requests']}"
            f" | {m['other_cpu_cores']:.2f} |"
        )
    return "\n".join(lines)


@dataclass
class Outcome:
    """Raw results of one benchmark run, apart from the summary of its figures."""

    measurements: list[dict[str, Any]]
    discarded: list[dict[str, Any]]
    body_sizes: dict[str, int]
    rss_mib: dict[str, float]
    exit_codes: dict[str, int | None]
    profile_text: str


def run_benchmark(
    args: argparse.Namespace, url: str, seeded: Seed, secret_key: str, wrk: str, out_dir: Path
) -> Outcome:
    """Start both servers, check them, load them, optionally profile them, and stop them."""
    started = start_servers(args, url, seeded.organization_id, secret_key, out_dir)
    profile_text = ""
    try:
        with tempfile.TemporaryDirectory(prefix="connex-bench-") as scratch:
            headers = {"Authorization": f"Bearer {seeded.api_key}"}
            script = write_header_script(Path(scratch), headers)
            body_sizes = check_responses(started, headers)
            measurements, discarded = run_loads(started, args, wrk, script)
            if args.profile:
                profiles = [
                    profile_server(server, args, wrk, script, out_dir)
                    for server in started.values()
                ]
                profile_text = "\n".join(profiles)
            rss = {name: round(server.rss_mib(), 1) for name, server in started.items()}
    finally:
        exit_codes = {name: servers.stop(server) for name, server in started.items()}
    return Outcome(measurements, discarded, body_sizes, rss, exit_codes, profile_text)


def write_results(
    out_dir: Path,
    args: argparse.Namespace,
    command: str,
    started_at: datetime,
    machine: dict[str, Any],
    outcome: Outcome,
    summary: dict[str, Any],
) -> None:
    """Write results.json with every figure and report.md with the tables and profiles."""
    pinning = None if args.no_pin else {"servers": args.server_cpu, "wrk": args.client_cpu}
    record = {
        "benchmark": "core_rest",
        "started_at": started_at.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "command": command,
        "request": f"GET {REQUEST_PATH}",
        "settings": {
            "runs": args.runs,
            "duration_s": args.duration,
            "warm_up_s": args.warm_up,
            "connections": list(CONNECTION_COUNTS),
            "wrk_threads": 1,
            "pinning": pinning,
            "max_other_cpu": args.max_other_cpu,
            "retries": args.retries,
            "projects": PROJECT_COUNT,
            "redis_url": args.redis_url,
            "database": make_url(args.database_url).database,
        },
        "machine": machine,
        "source": describe_source(),
        "response_bytes": outcome.body_sizes,
        "server_rss_mib_after_runs": outcome.rss_mib,
        "server_exit_codes": outcome.exit_codes,
        "summary": summary,
        "measurements": outcome.measurements,
        "discarded_measurements": outcome.discarded,
    }
    (out_dir / "results.json").write_text(json.dumps(record, indent=2) + "\n")

    report = [
        f"# Core REST benchmark, {started_at:%Y-%m-%d %H:%M} UTC",
        "",
        format_table(summary, args.runs),
        "",
        "## Runs",
        "",
        format_runs(outcome.measurements),
        "",
    ]
    if outcome.profile_text:
        report += ["## Profiles", "", outcome.profile_text]
    (out_dir / "report.md").write_text("\n".join(report) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python -m bench.core_rest " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        run(args, command)
    except (BenchmarkError, SetupError, ServerError, WrkError, pyspy.ProfilerError) as error:
        print(f"bench.core_rest: {error}", file=sys.stderr)
        return 1
    return 0


def run(args: argparse.Namespace, command: str) -> None:
    wrk = find_wrk()
    started_at = datetime.now(UTC)
    url = asyncpg_url(args.database_url)
    ensure_database(args.database_url)
    upgrade(url)
    # A 40-character secret for this run only, passed to the server in its environment.
    secret_key = secrets.token_urlsafe(30)
    seeded = asyncio.run(seed(url, secret_key.encode(), args.rate_limit))
    machine = describe_machine(seeded.postgresql_version, args.redis_url, wrk_version(wrk))
    pinning = (
        "none" if args.no_pin else f"servers on CPU {args.server_cpu}, wrk on CPU {args.client_cpu}"
    )
    print(
        f"{machine['cpus']} CPUs ({machine['cpu_model']}), Python {machine['python']},"
        f" PostgreSQL {machine['postgresql']}, Redis {machine['redis']}; pinning: {pinning}",
        flush=True,
    )

    out_dir = RESULTS_DIR / f"core_rest-{started_at:%Y%m%dT%H%M%SZ}"
    out_dir.mkdir(parents=True)
    outcome = run_benchmark(args, url, seeded, secret_key, wrk, out_dir)
    summary = summarize(outcome.measurements, outcome.discarded)
    write_results(out_dir, args, command, started_at, machine, outcome, summary)
    print()
    print(format_table(summary, args.runs))
    print(f"\nRaw results: {out_dir.relative_to(servers.REPOSITORY)}")


if __name__ == "__main__":
    raise SystemExit(main())
