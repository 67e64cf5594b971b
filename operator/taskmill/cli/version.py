"""``version``: this client's version, and the operator's, read from its
Deployment through the Kubernetes API.

The lease API reports a version too (``/openapi.json``), but a user with
kubectl access usually cannot reach it; the Deployment can be read with the
same credentials as the Tasks. The Helm chart labels it
``app.kubernetes.io/part-of=taskmill`` and ``app.kubernetes.io/component=operator``
with ``app.kubernetes.io/version`` (the chart's appVersion); the image is
shown too, since ``image.tag`` can differ from it. Searched: the namespace
``-n`` names, else every namespace, else (when listing across namespaces is
forbidden) the context's namespace.
"""

from __future__ import annotations

from typing import Any

import click

import taskmill
from taskmill.cli import output as out
from taskmill.cli.kubeopts import connection_options, output_option, user_errors

SELECTOR = "app.kubernetes.io/part-of=taskmill,app.kubernetes.io/component=operator"


def describe_deployment(obj: dict[str, Any]) -> dict[str, Any]:
    meta, spec = obj["metadata"], obj.get("spec") or {}
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    operator = next((c for c in containers if c.get("name") == "operator"), None)
    operator = operator or (containers[0] if containers else {})
    status = obj.get("status") or {}
    return {
        "namespace": meta.get("namespace", ""),
        "name": meta["name"],
        "version": (meta.get("labels") or {}).get("app.kubernetes.io/version", ""),
        "image": operator.get("image", ""),
        "readyReplicas": status.get("readyReplicas", 0),
        "replicas": spec.get("replicas", 1),
    }


async def find_operators(client: Any, namespace: str | None) -> tuple[list[dict[str, Any]], str]:
    """The operator Deployments visible to this user, and where they were searched."""
    from taskmill.kube.client import ApiError, path

    params = {"labelSelector": SELECTOR}
    if namespace is None:
        try:
            listed = await client.kube.get(path("deployments", group="apps", version="v1"), params)
            return [describe_deployment(o) for o in listed["items"]], "any namespace"
        except ApiError as exc:
            if exc.status != 403:
                raise
        namespace = client.namespace
    listed = await client.kube.get(
        path("deployments", namespace, group="apps", version="v1"), params
    )
    return [describe_deployment(o) for o in listed["items"]], f"namespace {namespace}"


@click.command("version")
@click.option("--client", "client_only", is_flag=True, help="Only the client's version.")
@output_option("json", "yaml")
@connection_options
@user_errors
def version(
    client_only: bool,
    output: str | None,
    namespace: str | None,
    kubeconfig: str | None,
    kube_context: str | None,
) -> None:
    """Print the client's version and the operator's (from its Deployment).

    Exit 1 when the API server cannot be asked; an operator that is not
    found (or that this user may not see) is reported, with exit 0.
    """
    import asyncio

    from taskmill.client.aio import AsyncClient
    from taskmill.kube.client import ApiError

    if output is None:
        click.echo(f"Client Version: {taskmill.__version__}")
    if client_only:
        if output is not None:
            click.echo(out.dump({"clientVersion": taskmill.__version__}, output))
        return

    async def main() -> tuple[list[dict[str, Any]] | None, str]:
        async with AsyncClient(
            namespace=namespace, kubeconfig=kubeconfig, context=kube_context
        ) as client:
            try:
                return await find_operators(client, namespace)
            except ApiError as exc:
                if exc.status != 403:
                    raise
                return None, f"not allowed to list Deployments: {exc.message or exc}"

    operators, where = asyncio.run(main())
    if output is not None:
        value = {"clientVersion": taskmill.__version__, "operators": operators or []}
        click.echo(out.dump(value, output))
        return
    if operators is None:
        click.echo(f"Operator Version: unknown ({where})")
    elif not operators:
        click.echo(f"Operator Version: not found (no Deployment labelled {SELECTOR} in {where})")
    for op in operators or []:
        click.echo(
            f"Operator Version: {op['version'] or 'unknown'} (deployment "
            f"{op['namespace']}/{op['name']}, image {op['image']}, "
            f"{op['readyReplicas']}/{op['replicas']} ready)"
        )
