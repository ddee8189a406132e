"""The ``connex`` command."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from connex.settings import ConfigurationError, get_settings

# Maximum pause, in milliseconds, of a worker's queue consumer between polls.
WORKER_POLL_MS = 100


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from connex.logs import configure_logging
    from connex.migrate import upgrade

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    if settings.is_sqlite:
        # The embedded database is created and kept up to date on start; a shared
        # PostgreSQL is migrated explicitly with `connex migrate` before deploying.
        upgrade(settings.database_url)
    uvicorn.run(
        "connex.app:create_app",
        factory=True,
        host=args.host or settings.host,
        port=args.port or settings.port,
        workers=args.workers,
        log_config=None,
        access_log=False,
        proxy_headers=args.proxy_headers,
    )
    return 0


def _worker(args: argparse.Namespace) -> int:
    # Dramatiq 2.2.1's Redis consumer sleeps with a backoff of up to this many milliseconds
    # whenever every prefetched message is still being processed, so the default of 1000
    # left threads idle and halved throughput in bench/webhook_delivery.py. Dramatiq reads
    # the variable when it is first imported, which is why it is set before the import.
    os.environ.setdefault("dramatiq_worker_timeout", str(WORKER_POLL_MS))
    from dramatiq import cli as dramatiq_cli

    settings = get_settings()
    if settings.redis_url is None:
        print(
            "connex: `connex worker` needs CONNEX_REDIS_URL; without it, `connex serve` delivers webhooks itself",
            file=sys.stderr,
        )
        return 2
    # Dramatiq's command line forks the worker processes, and each imports workers.main,
    # which declares the actor and starts the periodic sweep with the worker.
    shutdown_ms = round((settings.webhook_timeout_seconds + 5) * 1000)
    dramatiq_args = dramatiq_cli.make_argument_parser().parse_args(
        [
            "workers.main:broker",
            "--processes", str(args.processes),
            "--threads", str(args.threads),
            "--queues", "webhooks",
            "--skip-logging",
            "--worker-shutdown-timeout", str(shutdown_ms),
        ]
    )
    return dramatiq_cli.main(dramatiq_args)


def _migrate(_args: argparse.Namespace) -> int:
    from connex.migrate import upgrade

    upgrade(get_settings().database_url)
    return 0


def _openapi(args: argparse.Namespace) -> int:
    import orjson

    from rest_compat.openapi import build_document
    from schema import build_schema

    settings = get_settings()
    document = build_document(build_schema(settings), args.version, settings)
    sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def _create_key(args: argparse.Namespace) -> int:
    from connex.apikeys import create_key_offline
    from connex.db import Database
    from connex.migrate import upgrade

    settings = get_settings()
    if settings.is_sqlite:
        upgrade(settings.database_url)

    async def create() -> str:
        db = Database(settings.database_url)
        try:
            return await create_key_offline(
                db, settings.secret_key_bytes(), name=args.name, organization_slug=args.org, scopes=args.scope
            )
        finally:
            await db.dispose()

    try:
        key = asyncio.run(create())
    except (LookupError, ValueError) as error:
        print(f"connex: {error}", file=sys.stderr)
        return 2
    sys.stdout.write(key + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="connex", description="ConneX public API platform.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", help="interface to listen on (default: CONNEX_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (default: CONNEX_PORT or 8000)")
    serve.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (default: 1)")
    serve.add_argument("--proxy-headers", action="store_true", help="trust X-Forwarded-* from a load balancer")
    serve.set_defaults(handler=_serve)

    worker = commands.add_parser(
        "worker",
        help="run Dramatiq worker processes that deliver webhooks (needs CONNEX_REDIS_URL)",
        description="Run Dramatiq worker processes on the Redis broker. Each process delivers webhooks "
        "and, every CONNEX_WEBHOOK_SWEEP_INTERVAL_SECONDS, re-queues due deliveries whose message was lost.",
    )
    worker.add_argument("--processes", type=int, default=1, help="worker processes (default: 1)")
    worker.add_argument(
        "--threads", type=int, default=16, help="deliveries in flight at once per process (default: 16)"
    )
    worker.set_defaults(handler=_worker)

    migrate = commands.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(handler=_migrate)

    openapi = commands.add_parser("openapi", help="print the OpenAPI document of an API version")
    openapi.add_argument("version", choices=["v1", "v2"])
    openapi.set_defaults(handler=_openapi)

    admin = commands.add_parser("admin", help="administration").add_subparsers(dest="admin_command", required=True)
    create_key = admin.add_parser("create-key", help="issue an API key and print it alone on standard output")
    create_key.add_argument("--name", required=True, help="label shown in key listings")
    create_key.add_argument("--org", help="organization slug; omit for a platform admin key")
    create_key.add_argument(
        "--scope",
        action="extend",
        nargs="+",
        required=True,
        help="scopes to grant, for example admin or projects:read projects:write",
    )
    create_key.set_defaults(handler=_create_key)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except ConfigurationError as error:
        print(f"connex: configuration error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
