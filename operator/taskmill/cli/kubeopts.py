"""The options every user command shares, the kubectl way, and one place
that turns failures into a one-line error on stderr with a non-zero exit.

``-n/--namespace``, ``-A/--all-namespaces``, ``--kubeconfig``, ``--context``
resolve like kubectl's: the context's namespace unless ``-n`` says otherwise.
Exit codes: 0 done, 1 an error (API refusal, missing Task, a Dead Task for
``submit --wait``), 2 a usage error (click's own). No tracebacks for these.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from taskmill.cli.completion import complete_namespaces

if TYPE_CHECKING:
    from taskmill.client.sync import Client

F = TypeVar("F", bound=Callable[..., Any])

OUTPUTS = ("json", "yaml", "wide", "name")


def connection_options(func: F) -> F:
    """``-n``, ``--kubeconfig``, ``--context``."""
    func = click.option(
        "--context", "kube_context", default=None, help="The kubeconfig context to use."
    )(func)
    func = click.option(
        "--kubeconfig",
        default=None,
        type=click.Path(dir_okay=False),
        help="Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).",
    )(func)
    func = click.option(
        "-n",
        "--namespace",
        default=None,
        shell_complete=complete_namespaces,
        help="Namespace (default: the context's).",
    )(func)
    return func


def all_namespaces_option(func: F) -> F:
    return click.option("-A", "--all-namespaces", is_flag=True, help="Across all namespaces.")(func)


def selector_option(func: F) -> F:
    return click.option(
        "-l", "--selector", default=None, help="Label selector, e.g. -l team=billing,tier!=dev."
    )(func)


def output_option(*choices: str) -> Callable[[F], F]:
    return click.option(
        "-o",
        "--output",
        type=click.Choice(choices or OUTPUTS),
        default=None,
        help="Output format.",
    )


def make_client(namespace: str | None, kubeconfig: str | None, kube_context: str | None) -> Client:
    from taskmill.client.sync import Client

    return Client(namespace=namespace, kubeconfig=kubeconfig, context=kube_context)


def user_errors(func: F) -> F:
    """Turn the errors a user can cause into ``error: <one line>`` and exit 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import aiohttp

        from taskmill.client.errors import TaskmillError
        from taskmill.kube.client import ApiError
        from taskmill.kube.config import ConfigError

        try:
            return func(*args, **kwargs)
        except ApiError as exc:
            raise CommandError(exc.message or str(exc)) from None
        except (TaskmillError, ConfigError) as exc:
            raise CommandError(str(exc)) from None
        except BrokenPipeError:
            # The reader went away (`| head`): stop quietly, as kubectl does.
            # Python would report the broken pipe again when it flushes at exit.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(1)
        except (aiohttp.ClientError, OSError) as exc:
            raise CommandError(f"cannot reach the API server: {exc}") from None

    return wrapper  # type: ignore[return-value]


class CommandError(click.ClickException):
    """One line on stderr, ``error: ...`` as kubectl writes it, exit 1."""

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)
