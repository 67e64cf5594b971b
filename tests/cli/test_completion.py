"""Shell completion, invoked the way the shells and kubectl invoke it: bash
through the script `taskmill completion bash` prints, zsh and fish through
click's protocol, `kubectl taskmill` through kubectl's own `__complete`
(which runs kubectl_complete-taskmill), Task names from the API server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import taskmill
from taskmill.testing.controlplane import ControlPlane

BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def bash_complete(line: str) -> list[str]:
    """Complete the last word of `line` in a real bash with the script sourced."""
    script = (
        'eval "$(taskmill completion bash)"\n'
        f"COMP_WORDS=({line})\n"
        "COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))\n"
        '[[ "$LINE" == *" " ]] && COMP_WORDS+=("") && COMP_CWORD=$(( COMP_CWORD + 1 ))\n'
        "_taskmill_completion taskmill\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    result = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        env={**ENV, "LINE": line},
        check=True,
        timeout=60,
    )
    return [w for w in result.stdout.splitlines() if w]


def click_complete(shell: str, words: str, cword: str) -> str:
    result = subprocess.run(
        [str(BIN / "taskmill")],
        capture_output=True,
        text=True,
        env={
            **ENV,
            "_TASKMILL_COMPLETE": f"{shell}_complete",
            "COMP_WORDS": words,
            "COMP_CWORD": cword,
        },
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def kubectl_complete(*args: str) -> list[str]:
    result = subprocess.run(
        [str(BIN / "kubectl_complete-taskmill"), *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_bash_completes_commands_options_and_output_formats() -> None:
    assert bash_complete("taskmill ge") == ["get"]
    assert set(bash_complete("taskmill d")) == {"describe", "dev", "dlq"}
    assert bash_complete("taskmill completion ") == ["bash", "zsh", "fish"]
    assert bash_complete("taskmill get -o js") == ["json", "jsonpath="]
    assert bash_complete("taskmill get -o cu") == ["custom-columns="]
    assert "--no-headers" in bash_complete("taskmill get --no")
    assert bash_complete("taskmill get --phase ") == [
        "Pending",
        "Waiting",
        "Running",
        "Succeeded",
        "Dead",
        "Cancelled",
    ]


def test_zsh_and_fish_get_the_same_candidates() -> None:
    zsh = click_complete("zsh", "taskmill ge", "1")
    fish = click_complete("fish", "taskmill ge", "ge")

    assert zsh.splitlines()[:2] == ["plain", "get"]
    assert fish.startswith("plain,get")
    for shell, marker in (("zsh", "compdef _taskmill_completion taskmill"), ("fish", "complete")):
        script = subprocess.run(
            [str(BIN / "taskmill"), "completion", shell], capture_output=True, text=True, env=ENV
        ).stdout
        assert marker in script
        assert "_TASKMILL_COMPLETE" in script


def test_kubectl_complete_speaks_cobra() -> None:
    commands = kubectl_complete("")
    formats = kubectl_complete("get", "-o", "")
    files = kubectl_complete("get", "--kubeconfig", "")

    assert commands[-1] == ":4"  # no file completion
    assert {line.split("\t")[0] for line in commands[:-1]} == {
        "submit",
        "get",
        "list",
        "describe",
        "cancel",
        "dlq",
        "stats",
        "top",
        "replay",
        "version",
    }
    assert "get\tList Tasks, or show the named ones." in commands
    assert formats[:-1] == ["json", "yaml", "wide", "name", "jsonpath=", "custom-columns="]
    assert formats[-1] == ":6"  # no file completion, no space after jsonpath=
    assert files == [":0"]  # a path: the shell completes files


@pytest.mark.integration
def test_task_names_and_namespaces_come_from_the_api_server(
    crds: ControlPlane, namespace: str
) -> None:
    with taskmill.Client(kubeconfig=str(crds.kubeconfig), namespace=namespace) as client:
        for name in ("alpha-1", "alpha-2", "beta-1"):
            client.submit("nobody-handles-this", {}, name=name)
    conn = ["-n", namespace, "--kubeconfig", str(crds.kubeconfig)]

    described = kubectl_complete("describe", *conn, "")
    prefixed = kubectl_complete("cancel", *conn, "alpha-1", "al")
    spaces = kubectl_complete("get", "--kubeconfig", str(crds.kubeconfig), "-n", namespace[:-1])
    in_bash = bash_complete(f"taskmill describe {' '.join(conn)} b")
    unreachable = kubectl_complete("describe", "--kubeconfig", "/nonexistent", "")

    assert described == [
        "alpha-1\tnobody-handles-this",
        "alpha-2\tnobody-handles-this",
        "beta-1\tnobody-handles-this",
        ":4",
    ]
    assert prefixed == ["alpha-2\tnobody-handles-this", ":4"]  # alpha-1 is typed already
    assert namespace in spaces
    assert in_bash == ["beta-1"]
    assert unreachable == [":4"]  # nothing to offer, and no error in the shell


@pytest.mark.integration
def test_kubectl_itself_completes_the_plugin(crds: ControlPlane, namespace: str) -> None:
    """kubectl's `__complete` finds kubectl_complete-taskmill on PATH and relays it."""
    with taskmill.Client(kubeconfig=str(crds.kubeconfig), namespace=namespace) as client:
        client.submit("nobody-handles-this", {}, name="via-kubectl")
    kubectl = crds.kubectl_path

    result = subprocess.run(
        [
            str(kubectl),
            "__complete",
            "taskmill",
            "describe",
            "-n",
            namespace,
            "--kubeconfig",
            str(crds.kubeconfig),
            "via",
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["via-kubectl\tnobody-handles-this", ":4"]


@pytest.mark.integration
def test_dlq_retry_completes_dead_tasks_only(
    crds: ControlPlane, worker: str, namespace: str
) -> None:
    with taskmill.Client(kubeconfig=str(crds.kubeconfig), namespace=namespace) as client:
        client.submit("fail", {}, name="dead-one", max_attempts=1)
        client.submit("echo", {}, name="fine-one")
        client.wait("fine-one", timeout=60)
        with pytest.raises(taskmill.TaskDead):
            client.wait("dead-one", timeout=60)

    offered = kubectl_complete(
        "dlq", "retry", "-n", namespace, "--kubeconfig", str(crds.kubeconfig), ""
    )

    assert offered == ["dead-one\tfail", ":4"]
