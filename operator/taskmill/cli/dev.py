"""``taskmill dev``: Taskmill on a local control plane, for trying it out.

``dev up`` starts a real kube-apiserver, etcd and kube-controller-manager on
loopback (built on first use; see :mod:`taskmill.testing.assets`), installs
the CRDs and the ``payloadFrom`` admission policy (as the chart does), runs
the operator and a worker loaded with the example handlers, and applies the
example manifests. In the foreground it streams the logs and
tears everything down on Ctrl-C; with ``--detach`` it returns once all is
ready and ``dev down`` stops it. State lives in one directory
(``$TASKMILL_DEV_DIR``, default ``~/.cache/taskmill/dev``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from taskmill.cli.kubeopts import CommandError

STATE = "dev.json"


def dev_dir() -> Path:
    if os.environ.get("TASKMILL_DEV_DIR"):
        return Path(os.environ["TASKMILL_DEV_DIR"]).absolute()
    from taskmill.testing.assets import cache_dir

    return cache_dir() / "dev"


def find_examples() -> Path | None:
    """The examples/ directory of the checkout this package runs from, if any."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "examples" / "handlers.py"
        if candidate.exists():
            return candidate.parent
    return None


def _read_state(directory: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads((directory / STATE).read_text())
    except (OSError, ValueError):
        return None
    return state


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _running(directory: Path) -> dict[str, Any] | None:
    state = _read_state(directory)
    if state is None:
        return None
    from taskmill.testing.controlplane import ControlPlane, ControlPlaneError

    try:
        plane_up = ControlPlane.attach(directory / "controlplane").is_running()
    except ControlPlaneError:
        plane_up = False
    if plane_up or any(_alive(pid) for pid in state.get("pids", {}).values()):
        return state
    return None


#: What the ``testing`` extra brings that ``taskmill dev`` imports.
TESTING_EXTRA_MODULES = ("cryptography",)
INSTALL_HINT = "pip install 'taskmill[testing]'"


@click.group()
def dev() -> None:
    """A local control plane with Taskmill running on it (needs the testing extra)."""
    try:
        import taskmill.testing.stack  # noqa: F401
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in TESTING_EXTRA_MODULES:
            raise
        raise CommandError(
            f"taskmill dev needs the testing extra ({exc.name} is not installed): {INSTALL_HINT}"
        ) from None


@dev.command()
@click.option("-d", "--detach", is_flag=True, help="Return once everything is ready.")
@click.option(
    "--examples",
    "examples_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory with handlers.py and manifests (default: the checkout's examples/).",
)
@click.option("--concurrency", default=4, show_default=True, help="Worker slots.")
def up(detach: bool, examples_dir: Path | None, concurrency: int) -> None:
    """Start a control plane, the operator, a worker and the examples."""
    from taskmill.testing.assets import AssetError
    from taskmill.testing.controlplane import ControlPlane
    from taskmill.testing.stack import (
        install_admission,
        install_crds,
        start_operator,
        start_worker,
    )

    directory = dev_dir()
    running = _running(directory)
    if running is not None:
        raise click.ClickException(
            f"a dev environment is already running (kubeconfig {running['kubeconfig']}); "
            "use it, or stop it with `taskmill dev down`"
        )
    examples_dir = examples_dir or find_examples()
    if examples_dir is None or not (examples_dir / "handlers.py").exists():
        raise click.ClickException("no examples/handlers.py found; pass --examples DIR")
    if directory.exists():
        shutil.rmtree(directory)  # leftovers of a dev environment that is gone
    directory.mkdir(parents=True)
    say("starting kube-apiserver, etcd and kube-controller-manager (the first run builds them)")
    started = time.monotonic()
    plane = ControlPlane(directory / "controlplane", detached=detach)
    processes = []
    try:
        try:
            plane.start()
        except AssetError as exc:  # e.g. no kubectl: the message says what to install
            raise CommandError(str(exc)) from None
        say(f"control plane ready at {plane.server} ({time.monotonic() - started:.0f}s)")
        install_crds(plane)
        install_admission(plane)
        say("CRDs and the payloadFrom admission policy installed")
        operator, lease_url = start_operator(plane, directory / "operator.log", detached=detach)
        processes.append(operator)
        worker = start_worker(
            lease_url,
            "handlers",
            directory / "worker.log",
            cwd=examples_dir,
            concurrency=concurrency,
            detached=detach,
        )
        processes.append(worker)
        state = {
            "kubeconfig": str(plane.kubeconfig),
            "server": plane.server,
            "leaseUrl": lease_url,
            "pids": {p.name: p.pid for p in processes},
            "logs": {p.name: str(p.log_path) for p in processes},
        }
        (directory / STATE).write_text(json.dumps(state, indent=2))
        manifests = sorted(examples_dir.glob("*.yaml"))
        if manifests:
            args = [x for m in manifests for x in ("-f", str(m))]
            plane.kubectl("apply", *args)
            say(f"applied {', '.join(m.name for m in manifests)}")
    except BaseException:
        for process in processes:
            process.stop(5)
        plane.stop()
        shutil.rmtree(directory, ignore_errors=True)
        raise
    click.echo(_next_steps(plane.kubeconfig, directory, detach))
    if detach:
        return
    _follow(processes)
    say("stopping")
    for process in reversed(processes):
        process.stop(30)
    plane.stop()
    shutil.rmtree(directory, ignore_errors=True)


def say(text: str) -> None:
    click.echo(click.style("taskmill dev: ", fg="cyan") + text, err=True)


def _next_steps(kubeconfig: Path, directory: Path, detached: bool) -> str:
    stop = "taskmill dev down" if detached else "Ctrl-C"
    return (
        f"\nTaskmill is running. In another shell:\n\n"
        f'  export KUBECONFIG={kubeconfig}     # or: eval "$(taskmill dev env)"\n'
        f"  kubectl get tasks                   # the examples, Succeeded and Dead\n"
        f"  kubectl apply -f examples/echo-task.yaml\n"
        f"  kubectl get task echo-hello -o jsonpath='{{.status.result}}'\n\n"
        f"Logs: {directory}/operator.log, {directory}/worker.log. Stop: {stop}.\n"
    )


def _follow(processes: list[Any]) -> None:
    """Print the processes' logs as they grow, until Ctrl-C or one of them dies."""
    offsets = {p.name: 0 for p in processes}
    interrupted = False

    def on_signal(*_: Any) -> None:
        nonlocal interrupted
        interrupted = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not interrupted:
        for process in processes:
            with contextlib.suppress(OSError), open(process.log_path, "rb") as log:
                log.seek(offsets[process.name])
                chunk = log.read()
                offsets[process.name] += len(chunk)
            for line in chunk.decode(errors="replace").splitlines():
                sys.stderr.write(f"{click.style(process.name, fg='yellow')} | {line}\n")
            if not process.alive():
                click.echo(f"{process.name} exited with {process.popen.returncode}", err=True)
                return
        time.sleep(0.2)


@dev.command()
def down() -> None:
    """Stop a dev environment started with --detach."""
    from taskmill.testing.controlplane import ControlPlane, ControlPlaneError

    directory = dev_dir()
    state = _read_state(directory)
    if state is None and not (directory / "controlplane").exists():
        click.echo("no dev environment is running", err=True)
        return
    for name, pid in (state or {}).get("pids", {}).items():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        click.echo(f"stopped {name}", err=True)
    with contextlib.suppress(ControlPlaneError):
        ControlPlane.attach(directory / "controlplane").stop()
        click.echo("stopped the control plane", err=True)
    shutil.rmtree(directory, ignore_errors=True)


@dev.command()
def env() -> None:
    """Print shell exports for the running dev environment: eval "$(taskmill dev env)"."""
    state = _running(dev_dir())
    if state is None:
        raise click.ClickException(
            "no dev environment is running; start one with `taskmill dev up`"
        )
    click.echo(f"export KUBECONFIG={state['kubeconfig']}")
    click.echo(f"export TASKMILL_LEASE_URL={state['leaseUrl']}")
