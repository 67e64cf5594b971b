"""``taskmill operator`` and ``taskmill worker``: the two long-running commands,
exactly what their containers run."""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
import sys

import click

from taskmill import logs


@click.command("operator")
@click.option(
    "--kubeconfig", envvar="KUBECONFIG_FILE", help="Kubeconfig file (default: kubectl's rules)."
)
@click.option(
    "-n",
    "--namespace",
    "namespaces",
    multiple=True,
    help="Watch only these namespaces (repeatable).",
)
@click.option(
    "--lease-host", default="0.0.0.0", show_default=True, help="Address of the lease API."
)
@click.option("--lease-port", default=8080, show_default=True, help="Port of the lease API.")
@click.option(
    "--lease-seconds", default=30.0, show_default=True, help="Default lease (visibility timeout)."
)
@click.option(
    "--no-worker-after-seconds",
    default=30.0,
    show_default=True,
    help="Mark a Pending Task Waiting/NoWorker when no worker asked for its type this long.",
)
@click.option(
    "--auth-audience",
    envvar="TASKMILL_AUTH_AUDIENCE",
    default=None,
    help="Authenticate lease-API callers: their ServiceAccount token must carry this "
    "audience (checked by TokenReview). Default: no authentication.",
)
@click.option(
    "--worker-identity",
    "worker_identities",
    multiple=True,
    help="A user allowed to lease with --auth-audience, e.g. "
    "system:serviceaccount:NS:SA (repeatable).",
)
@click.option(
    "--token-reviews-per-second",
    default=20.0,
    show_default=True,
    help="TokenReviews a second at most for tokens not seen before (bursts of 5x); "
    "beyond it such calls get 503 and retry.",
)
@click.option(
    "--lease-header-timeout-seconds",
    default=10.0,
    show_default=True,
    help="A new lease-API connection must send its first request's headers within this.",
)
@click.option(
    "--lease-body-timeout-seconds",
    default=30.0,
    show_default=True,
    help="A lease-API request body must arrive within this after its headers (else 408).",
)
@click.option(
    "--lease-idle-timeout-seconds",
    default=30.0,
    show_default=True,
    help="Close a lease-API connection idle this long.",
)
@click.option(
    "--lease-max-connections-per-address",
    default=256,
    show_default=True,
    help="Open lease-API connections per client address; more are refused with 503.",
)
@click.option(
    "--leader-elect/--no-leader-elect",
    default=False,
    show_default=True,
    help="Dispatch only while holding a coordination.k8s.io Lease; standbys are not Ready.",
)
@click.option(
    "--leader-election-name", default="taskmill-operator", show_default=True, help="Lease name."
)
@click.option(
    "--leader-election-namespace",
    envvar="POD_NAMESPACE",
    default="default",
    show_default=True,
    help="Namespace of the Lease.",
)
@click.option(
    "--leader-election-identity",
    envvar="POD_NAME",
    default="",
    help="This replica's identity (default: $POD_NAME, else host name and pid).",
)
@click.option("--leader-election-lease-seconds", default=15.0, show_default=True)
@click.option("--leader-election-renew-deadline-seconds", default=10.0, show_default=True)
@click.option("--leader-election-retry-seconds", default=2.0, show_default=True)
@click.option("--log-level", default="INFO", show_default=True)
def operator_command(
    kubeconfig: str | None,
    namespaces: tuple[str, ...],
    lease_host: str,
    lease_port: int,
    lease_seconds: float,
    no_worker_after_seconds: float,
    auth_audience: str | None,
    worker_identities: tuple[str, ...],
    token_reviews_per_second: float,
    lease_header_timeout_seconds: float,
    lease_body_timeout_seconds: float,
    lease_idle_timeout_seconds: float,
    lease_max_connections_per_address: int,
    leader_elect: bool,
    leader_election_name: str,
    leader_election_namespace: str,
    leader_election_identity: str,
    leader_election_lease_seconds: float,
    leader_election_renew_deadline_seconds: float,
    leader_election_retry_seconds: float,
    log_level: str,
) -> None:
    """Run the operator: dispatch Tasks and serve the lease API."""
    from taskmill.controller import run as operator_run
    from taskmill.controller.settings import OperatorSettings

    logs.setup(log_level)
    settings = OperatorSettings(
        namespaces=namespaces,
        lease_host=lease_host,
        lease_port=lease_port,
        lease_seconds=lease_seconds,
        no_worker_after_seconds=no_worker_after_seconds,
        auth_audience=auth_audience or None,
        worker_identities=worker_identities,
        token_reviews_per_second=token_reviews_per_second,
        token_reviews_burst=max(1, round(token_reviews_per_second * 5)),
        lease_header_timeout_seconds=lease_header_timeout_seconds,
        lease_body_timeout_seconds=lease_body_timeout_seconds,
        lease_idle_timeout_seconds=lease_idle_timeout_seconds,
        lease_max_connections_per_address=lease_max_connections_per_address,
        leader_lease=(leader_election_namespace, leader_election_name) if leader_elect else None,
        leader_identity=leader_election_identity,
        leader_lease_seconds=leader_election_lease_seconds,
        leader_renew_deadline_seconds=leader_election_renew_deadline_seconds,
        leader_retry_seconds=leader_election_retry_seconds,
    )
    if auth_audience and not worker_identities:
        raise click.UsageError("--auth-audience needs at least one --worker-identity")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await operator_run.run(settings, kubeconfig=kubeconfig, stop=stop)

    try:
        asyncio.run(main())
    except (operator_run.LeadershipLost, operator_run.LoopEnded) as exc:
        # Exit non-zero: the Deployment restarts this replica (as a standby,
        # when it lost the leadership).
        raise click.ClickException(str(exc)) from exc


@click.command("worker")
@click.option(
    "--handlers",
    "modules",
    multiple=True,
    required=True,
    help="Module(s) whose @taskmill.handler functions to run, e.g. my.handlers.",
)
@click.option(
    "--lease-url",
    envvar="TASKMILL_LEASE_URL",
    default="http://127.0.0.1:8080",
    show_default=True,
    help="The operator's lease API.",
)
@click.option(
    "-c",
    "--concurrency",
    default=4,
    show_default=True,
    type=click.IntRange(1, 1024),
    help="Handlers running at once.",
)
@click.option(
    "--grace-seconds",
    default=25.0,
    show_default=True,
    help="On SIGTERM, time for running handlers before they are handed back.",
)
@click.option("--name", default="", help="Worker identity (default: host name and pid).")
@click.option(
    "--token-file",
    envvar="TASKMILL_TOKEN_FILE",
    type=click.Path(dir_okay=False),
    default=None,
    help="ServiceAccount token sent to the lease API, re-read when it changes (default: "
    "/var/run/secrets/taskmill/token, else the pod's ServiceAccount token, if present).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    envvar="TASKMILL_METRICS_PORT",
    help="Serve Prometheus /metrics (and /healthz) on this port, e.g. 9100. Default: off.",
)
@click.option("--log-level", default="INFO", show_default=True)
def worker_command(
    modules: tuple[str, ...],
    lease_url: str,
    concurrency: int,
    grace_seconds: float,
    name: str,
    token_file: str | None,
    metrics_port: int | None,
    log_level: str,
) -> None:
    """Run handlers for Tasks leased from the operator.

    SIGTERM (or Ctrl-C) stops leasing and gives running handlers
    --grace-seconds; what is still running then is handed back and re-queued
    at once without counting an attempt. A second signal hands back at once.
    """
    # A stop asked for while handler modules still load is kept and honoured
    # as soon as the worker runs (it then leases nothing and exits 0).
    early_stop: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: early_stop.append(signum))

    from taskmill.worker.registry import registry
    from taskmill.worker.runner import Worker, WorkerSettings

    logs.setup(log_level)
    # Like `python -m`, resolve handler modules from the working directory.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for module in modules:
        load_handler_module(module)
    if len(registry) == 0:
        raise click.ClickException(f"no @taskmill.handler functions found in {', '.join(modules)}")
    settings = WorkerSettings(
        lease_url=lease_url,
        concurrency=concurrency,
        grace_seconds=grace_seconds,
        name=name,
        metrics_port=metrics_port,
    )

    async def main() -> None:
        import socket

        from taskmill.worker.leaseclient import LeaseClient, default_token_file

        client = LeaseClient(
            lease_url,
            settings.name or f"{socket.gethostname()}-{os.getpid()}",
            token_file=token_file or default_token_file(),
        )
        worker = Worker(registry, settings, client=client)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        if early_stop:
            worker.stop()
        await worker.run()

    try:
        asyncio.run(main())
    except OSError as exc:  # e.g. the metrics port is taken
        raise click.ClickException(str(exc)) from exc
    _exit_despite_stuck_handlers()


def _exit_despite_stuck_handlers() -> None:
    """Sync handlers that ignore ``ctx.cancelled`` keep their threads alive, and
    Python waits for pool threads at exit. Their Tasks were handed back
    already, so leave without them rather than hang until SIGKILL."""
    import logging
    import threading
    import time

    handlers = [t for t in threading.enumerate() if t.name.startswith("taskmill-handler")]
    deadline = time.monotonic() + 0.5  # idle pool threads exit on their own at once
    for thread in handlers:
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [t for t in handlers if t.is_alive()]
    if stuck:
        logging.getLogger("taskmill.worker").warning(
            "%d handler threads still running (their Tasks were handed back); exiting", len(stuck)
        )
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def load_handler_module(module: str) -> None:
    """Import a handler module, turning every way it can fail into one clear line."""
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and (module == exc.name or module.startswith(exc.name + ".")):
            raise click.ClickException(
                f"handler module {module!r} not found (looked in {os.getcwd()} and sys.path)"
            ) from exc
        raise click.ClickException(
            f"handler module {module!r} failed to import: {type(exc).__name__}: {exc}"
        ) from exc
    except BaseException as exc:  # a user's module: report, do not trace
        if isinstance(exc, KeyboardInterrupt):
            raise
        where = ""
        tb = exc.__traceback__
        while tb is not None:  # point at the last frame inside the user's code
            where = f" ({tb.tb_frame.f_code.co_filename}:{tb.tb_lineno})"
            tb = tb.tb_next
        raise click.ClickException(
            f"handler module {module!r} failed to import: {type(exc).__name__}: {exc}{where}"
        ) from exc
