"""``taskmill operator`` and ``taskmill worker``: the two long-running commands,
exactly what their containers run."""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
import sys

import click

from taskmill.cli import logs


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
@click.option("--log-level", default="INFO", show_default=True)
def operator_command(
    kubeconfig: str | None,
    namespaces: tuple[str, ...],
    lease_host: str,
    lease_port: int,
    lease_seconds: float,
    no_worker_after_seconds: float,
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
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await operator_run.run(settings, kubeconfig=kubeconfig, stop=stop)

    asyncio.run(main())


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
@click.option("--log-level", default="INFO", show_default=True)
def worker_command(
    modules: tuple[str, ...],
    lease_url: str,
    concurrency: int,
    grace_seconds: float,
    name: str,
    log_level: str,
) -> None:
    """Run handlers for Tasks leased from the operator."""
    from taskmill.worker.registry import registry
    from taskmill.worker.runner import Worker, WorkerSettings

    logs.setup(log_level)
    # Like `python -m`, resolve handler modules from the working directory.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:  # a user's module: report, do not trace
            raise click.ClickException(f"cannot import handler module {module!r}: {exc}") from exc
    if len(registry) == 0:
        raise click.ClickException(f"no @taskmill.handler functions found in {', '.join(modules)}")
    settings = WorkerSettings(
        lease_url=lease_url, concurrency=concurrency, grace_seconds=grace_seconds, name=name
    )

    async def main() -> None:
        worker = Worker(registry, settings)
        loop = asyncio.get_running_loop()
        signals = 0

        def on_signal() -> None:
            nonlocal signals
            signals += 1
            worker.stop()
            if signals > 1:  # a second signal: no more grace
                for task in asyncio.all_tasks(loop):
                    if task.get_name().startswith("task-"):
                        task.cancel()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        await worker.run()

    asyncio.run(main())
