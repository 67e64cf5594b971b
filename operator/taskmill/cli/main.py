"""Entry points: ``taskmill`` (all commands) and ``kubectl-taskmill`` (the user
commands, so ``kubectl taskmill ...`` works as a kubectl plugin)."""

from __future__ import annotations

import click

import taskmill
from taskmill.cli import dlq, replay, stats, tasks, top
from taskmill.cli.completion import completion
from taskmill.cli.dev import dev
from taskmill.cli.runtime import operator_command, worker_command
from taskmill.cli.version import version


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(taskmill.__version__, prog_name="taskmill")
def cli() -> None:
    """Taskmill: a Kubernetes-native task scheduler."""


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(taskmill.__version__, prog_name="kubectl-taskmill")
def plugin() -> None:
    """Taskmill's user commands, as a kubectl plugin."""


cli.add_command(operator_command)
cli.add_command(worker_command)
cli.add_command(dev)
# `kubectl taskmill` is completed by kubectl, through kubectl_complete-taskmill.
cli.add_command(completion)

# The user commands: the same set under `taskmill` and `kubectl taskmill`.
for _group in (cli, plugin):
    _group.add_command(tasks.submit)
    _group.add_command(tasks.get)
    _group.add_command(tasks.list_command)
    _group.add_command(tasks.describe)
    _group.add_command(tasks.cancel)
    _group.add_command(dlq.dlq)
    _group.add_command(stats.stats)
    _group.add_command(top.top)
    _group.add_command(replay.replay)
    _group.add_command(version)


def main() -> None:
    cli(prog_name="taskmill")


def kubectl_plugin() -> None:
    plugin(prog_name="kubectl taskmill")
