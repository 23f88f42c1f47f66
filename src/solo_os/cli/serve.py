"""``run``, ``serve`` and ``worker``: put an app to work."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from typing import Annotated, Any

import typer
import uvicorn

from solo_os.cli import _common, _supervise
from solo_os.runtime import httpserver as _httpserver
from solo_os.runtime import runtime as runtime_mod

AppArg = _common.AppArg
AppOpt = _common.AppOpt
Host = Annotated[str, typer.Option(help="interface to listen on")]
Port = Annotated[int, typer.Option(min=0, max=65535, help="TCP port to listen on")]


def _serve(target: str | None, host: str, port: int, roles: tuple[str, ...], migrate: bool) -> None:
    with _common.friendly_errors():
        application = _common.load_app(target)
        _check_port(host, port)
        application.prepare()  # every settings and secrets problem at once, before anything starts
        _common.check_database(application.settings.database_url, create=migrate)
        _common.setup_logging(application.settings, application.service)
        rt = runtime_mod.Runtime(application, roles=roles, migrate=migrate)
        rt.prepare()
        _common.run_async(_serve_async(rt, host, port))


def _check_port(host: str, port: int) -> None:
    """Exit 3 with one line when the port is taken, before anything starts."""
    if port == 0 or os.environ.get(_supervise.REUSE_PORT_ENV):
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            _common.fail(
                "port_in_use",
                [f"cannot listen on {host}:{port}: {exc.strerror or exc} (another solo-os? try --port)"],
                _common.EXIT_PORT,
            )


async def _serve_async(rt: runtime_mod.Runtime, host: str, port: int) -> None:
    server = uvicorn.Server(_httpserver.uvicorn_config(rt.asgi(lifespan=False), rt.settings, host, port))
    stop_server = server.handle_exit

    def handle_exit(sig: int, frame: Any) -> None:
        # The worker starts draining at the signal, beside uvicorn closing its connections,
        # and the process ends within SOLO_OS_SHUTDOWN_GRACE (runtime.hard_exit_after).
        rt.request_stop()
        stop_server(sig, frame)

    server.handle_exit = handle_exit  # type: ignore[method-assign]
    sockets = None
    if os.environ.get(_supervise.REUSE_PORT_ENV):
        sockets = [_supervise.listening_socket(host, port)]
    serving: list[asyncio.Task[None]] = []

    def serve_now() -> None:
        # The database is not there yet: listen meanwhile, so /healthz answers and /readyz
        # and the webhooks answer 503 (with Retry-After) instead of nothing.
        _quiet_signals()
        serving.append(asyncio.create_task(server.serve(sockets=sockets), name="solo-os-http"))

    try:
        await rt.start(waiting=serve_now)
        if serving:
            await serving[0]
        else:
            _quiet_signals()
            await server.serve(sockets=sockets)
    finally:
        if serving and not serving[0].done():
            server.should_exit = True
            await asyncio.gather(serving[0], return_exceptions=True)
        await rt.stop()
        _common.abandoned_threads = bool(rt.worker and rt.worker.abandoned_threads)


def _quiet_signals() -> None:
    """uvicorn re-raises the signal that stopped it once it returns; with these handlers in
    place that re-raise is a no-op and the process exits 0 after a clean shutdown."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)


def run(
    app_arg: AppArg = None,
    host: Host = "127.0.0.1",
    port: Port = 8000,
    reload: Annotated[
        bool, typer.Option("--reload", help="restart on code changes (development); queued work is kept")
    ] = False,
    app: AppOpt = None,
) -> None:
    """Ingress, worker, scheduler (and consumer) in one process; brings the schema up to date first."""
    app = app_arg or app
    if reload:
        from solo_os.cli import dev  # the file watcher is loaded only for development

        dev.run_with_reload(app, host, port)
        return
    # "consume" runs only when the app has queue-fed sources (sources.sqs, redis_stream, ...)
    _serve(app, host, port, ("serve", "worker", "scheduler", "consume"), migrate=True)


def serve(
    app_arg: AppArg = None,
    host: Host = "127.0.0.1",
    port: Port = 8000,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="ingress processes sharing the port (SO_REUSEPORT)")
    ] = 1,
    app: AppOpt = None,
) -> None:
    """Only the HTTP ingress (scale-out: run workers separately)."""
    app = app_arg or app
    if workers > 1:
        if port == 0:
            raise typer.BadParameter("--workers needs a fixed --port", param_hint="--port")
        argv = [sys.argv[0], "serve", *([app] if app else []), "--host", host, "--port", str(port)]
        raise typer.Exit(_supervise.supervise(workers, argv, env={_supervise.REUSE_PORT_ENV: "1"}))
    _serve(app, host, port, ("serve",), migrate=False)


def worker(
    app_arg: AppArg = None,
    concurrency: Annotated[int | None, typer.Option(min=1, help="handlers run at once (per process)")] = None,
    processes: Annotated[
        str | None,
        typer.Option(
            show_default="$SOLO_OS_WORKER_PROCESSES, else 1",
            help="worker processes, each with its own --concurrency: a number, or 'auto' (one per core)",
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, envvar="SOLO_OS_METRICS_PORT", help="serve /metrics on this port"),
    ] = None,
    app: AppOpt = None,
) -> None:
    """Only the worker: claims and runs executions until SIGTERM/SIGINT."""
    app = app_arg or app
    if processes is not None:
        _process_count(processes)  # a bad value is refused before the app loads
    with _common.friendly_errors():
        application = _common.load_app(app)
        application.prepare()
        _common.check_database(application.settings.database_url, create=False)
        count = _process_count(processes or application.settings.worker_processes)
        if metrics_port:
            application._settings = application.settings.model_copy(update={"metrics_port": metrics_port})
        if count > 1:
            if application.settings.metrics_port:
                raise typer.BadParameter(
                    "one /metrics port cannot serve several processes: run one worker per "
                    "metrics port, or unset SOLO_OS_METRICS_PORT", param_hint="--processes",
                )
            argv = [sys.argv[0], "worker", *([app] if app else []), "--processes", "1"]
            argv += ["--concurrency", str(concurrency)] if concurrency else []
            raise typer.Exit(_supervise.supervise(count, argv, name="worker", restart_killed=True))
        _common.setup_logging(application.settings, application.service)
        options = {"concurrency": concurrency} if concurrency else {}
        rt = runtime_mod.Runtime(application, roles=("worker",), worker_options=options)
        rt.prepare()
        _common.run_async(_work(rt))


def _process_count(value: str) -> int:
    """``--processes``: the rule of ``config.worker_process_count``, refused as a CLI error."""
    from solo_os import config  # here, not at import: `--help` stays light

    try:
        return config.worker_process_count(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is neither a number from 1 to 256 nor 'auto'",
                                 param_hint="--processes / SOLO_OS_WORKER_PROCESSES") from None


async def _work(rt: runtime_mod.Runtime) -> None:
    try:
        await rt.run_worker()
    finally:
        _common.abandoned_threads = bool(rt.worker and rt.worker.abandoned_threads)
