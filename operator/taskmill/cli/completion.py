"""Shell completion: ``taskmill completion bash|zsh|fish`` and the
``kubectl_complete-taskmill`` executable that kubectl (>= 1.26) runs to
complete ``kubectl taskmill ...``.

Both are click's completion (:mod:`click.shell_completion`): commands,
options, choices, and, from the API server, Task names and namespaces. The
kubectl side speaks Cobra's ``__complete`` protocol, which kubectl relays to
the shell: kubectl runs ``kubectl_complete-taskmill ARG... WORD`` (the words
after ``taskmill``, the last one being completed, possibly empty), and reads
one candidate per line (``value<TAB>description``) and a last line
``:DIRECTIVE``. Completion never prints an error: a cluster that cannot be
reached in :data:`LOOKUP_SECONDS` just completes nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click
from click.shell_completion import CompletionItem, ShellComplete, get_completion_class

#: How long a completion may wait for the API server.
LOOKUP_SECONDS = 5.0

SHELLS = ("bash", "zsh", "fish")

# Cobra's ShellCompDirective bits (cobra/completions.go).
DIRECTIVE_ERROR = 1
DIRECTIVE_NO_SPACE = 2
DIRECTIVE_NO_FILE_COMP = 4


def _lookup(ctx: click.Context, fetch: Callable[[Any], Any]) -> Any:
    """Run ``fetch(client)`` against the cluster the command line names so far."""
    import asyncio

    from taskmill.client.aio import AsyncClient

    params = _params(ctx)

    async def main() -> Any:
        async with AsyncClient(
            namespace=params.get("namespace"),
            kubeconfig=params.get("kubeconfig"),
            context=params.get("kube_context"),
        ) as client:
            return await asyncio.wait_for(fetch(client), LOOKUP_SECONDS)

    return asyncio.run(main())


def _params(ctx: click.Context) -> dict[str, Any]:
    """The options parsed so far, the command's over its groups'."""
    merged: dict[str, Any] = {}
    chain = []
    node: click.Context | None = ctx
    while node is not None:
        chain.append(node)
        node = node.parent
    for context in reversed(chain):
        merged.update({k: v for k, v in context.params.items() if v is not None})
    return merged


def task_names(phase: str | None = None) -> Callable[..., list[CompletionItem]]:
    """A completer of Task names (of one phase, if given), minus those already typed."""

    def complete(
        ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        params = _params(ctx)
        given = set(params.get(param.name or "", ()) or ())
        try:
            listed = _lookup(
                ctx,
                lambda client: client.list_raw(
                    all_namespaces=bool(params.get("all_namespaces")),
                    selector=params.get("selector"),
                ),
            )
        except Exception:  # no cluster, no permission, a broken kubeconfig: no candidates
            return []
        names = []
        for obj in listed["items"]:
            name = obj["metadata"]["name"]
            status = obj.get("status") or {}
            if phase is not None and status.get("phase", "Pending") != phase:
                continue
            if name.startswith(incomplete) and name not in given:
                names.append(CompletionItem(name, help=(obj.get("spec") or {}).get("type")))
        return names

    return complete


complete_task_names = task_names()
complete_dead_task_names = task_names("Dead")


def complete_phases(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    from taskmill.models.task import Phase

    return [CompletionItem(p.value) for p in Phase if p.value.startswith(incomplete)]


def complete_namespaces(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    from taskmill.kube.client import path

    try:
        listed = _lookup(
            ctx, lambda client: client.kube.get(path("namespaces", group="", version="v1"))
        )
    except Exception:  # as above: nothing to offer
        return []
    names = [o["metadata"]["name"] for o in listed["items"]]
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the completion script for SHELL.

    \b
      bash:  eval "$(taskmill completion bash)"      (in ~/.bashrc; bash >= 4.4)
      zsh:   eval "$(taskmill completion zsh)"       (in ~/.zshrc)
      fish:  taskmill completion fish > ~/.config/fish/completions/taskmill.fish

    `kubectl taskmill <TAB>` needs no script: kubectl runs the
    kubectl_complete-taskmill executable installed with the package.
    """
    root = ctx.find_root()
    prog_name = root.info_name or "taskmill"
    complete_var = "_{}_COMPLETE".format(prog_name.replace("-", "_").replace(" ", "_")).upper()
    cls = get_completion_class(shell)
    assert cls is not None  # one of SHELLS, which click all knows
    click.echo(cls(root.command, {}, prog_name, complete_var).source())


def cobra_lines(items: list[CompletionItem]) -> list[str]:
    """Candidates in Cobra's ``__complete`` format, the directive line last."""
    lines = []
    directive = DIRECTIVE_NO_FILE_COMP
    for item in items:
        if item.type in ("file", "dir"):
            directive &= ~DIRECTIVE_NO_FILE_COMP  # let the shell complete paths
            continue
        value = str(item.value)
        if value.endswith("="):
            directive |= DIRECTIVE_NO_SPACE  # -o jsonpath=... goes on
        help_text = (item.help or "").splitlines()[0] if item.help else ""
        lines.append(f"{value}\t{help_text}" if help_text else value)
    lines.append(f":{directive}")
    return lines


def kubectl_complete() -> None:
    """``kubectl_complete-taskmill``: answer kubectl's completion request."""
    from taskmill.cli.main import plugin

    args = sys.argv[1:]
    words, incomplete = args[:-1], args[-1] if args else ""
    try:
        items = ShellComplete(plugin, {}, "kubectl taskmill", "_KUBECTL_TASKMILL_COMPLETE")
        lines = cobra_lines(items.get_completions(words, incomplete))
    except Exception:  # a half-typed command line must not print a traceback into the shell
        lines = [f":{DIRECTIVE_ERROR}"]
    sys.stdout.write("\n".join(lines) + "\n")
