"""Exec credential plugins: the output parsed, the plugin run, the credential cached."""

from __future__ import annotations

import dataclasses
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskmill.kube.exec_plugin import (
    ExecAuthenticator,
    ExecConfig,
    ExecCredential,
    ExecPluginError,
    InteractiveMode,
    exec_info,
    parse_output,
    run,
)

V1 = "client.authentication.k8s.io/v1"
V1BETA1 = "client.authentication.k8s.io/v1beta1"


def output(status: dict[str, Any], api_version: str = V1) -> bytes:
    return json.dumps(
        {"apiVersion": api_version, "kind": "ExecCredential", "status": status}
    ).encode()


CONFIG = ExecConfig(command="plugin", api_version=V1)


def test_a_token_with_its_expiry() -> None:
    credential = parse_output(
        output({"token": "abc", "expirationTimestamp": "2030-01-02T03:04:05Z"}), CONFIG
    )
    assert credential.token == "abc"
    assert credential.expires_at == 1893553445.0
    assert credential.expired(1893553445.0)
    assert not credential.expired(1893553444.0)


def test_a_client_certificate_and_no_expiry() -> None:
    credential = parse_output(
        output({"clientCertificateData": "CERT", "clientKeyData": "KEY"}), CONFIG
    )
    assert (credential.client_certificate_data, credential.client_key_data) == ("CERT", "KEY")
    assert credential.token is None
    assert not credential.expired(1e12)


@pytest.mark.parametrize(
    ("stdout", "complaint"),
    [
        (b"not json", "printed no JSON"),
        (b'{"kind": "Other"}', "printed no ExecCredential"),
        (output({"token": "t"}, V1BETA1), "answered in client.authentication.k8s.io/v1beta1"),
        (b'{"apiVersion": "%s", "kind": "ExecCredential"}' % V1.encode(), "has no status"),
        (output({}), "neither a token nor clientCertificateData"),
        (output({"clientCertificateData": "CERT"}), "come together"),
        (output({"token": "t", "expirationTimestamp": "tomorrow"}), "not an RFC 3339 time"),
    ],
)
def test_unusable_output_is_refused_naming_the_plugin(stdout: bytes, complaint: str) -> None:
    with pytest.raises(ExecPluginError, match=complaint) as raised:
        parse_output(stdout, CONFIG)
    assert "'plugin'" in str(raised.value)


@given(st.text(min_size=1, alphabet=st.characters(blacklist_categories=("Cs",))))
def test_any_token_round_trips(token: str) -> None:
    assert parse_output(output({"token": token}), CONFIG).token == token


def test_exec_info_has_the_cluster_only_when_asked() -> None:
    assert exec_info(CONFIG, interactive=True) == {
        "apiVersion": V1,
        "kind": "ExecCredential",
        "spec": {"interactive": True},
    }
    with_cluster = ExecConfig(command="p", api_version=V1, cluster_json='{"server": "https://s"}')
    assert exec_info(with_cluster, interactive=False)["spec"] == {
        "interactive": False,
        "cluster": {"server": "https://s"},
    }


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_credential_is_cached_until_it_expires() -> None:
    clock, runs = Clock(), []

    def runner(_: ExecConfig) -> ExecCredential:
        runs.append(clock.now)
        return ExecCredential(token=f"t{len(runs)}", expires_at=clock.now + 60)

    auth = ExecAuthenticator(CONFIG, runner=runner, clock=clock)
    assert auth.cached() is None
    assert auth.get().token == "t1"
    clock.now += 59.9
    assert auth.get().token == "t1"
    assert auth.cached() is not None
    clock.now += 0.1
    assert auth.cached() is None
    assert auth.get().token == "t2"
    assert auth.runs == 2


def test_a_refused_credential_is_dropped_once_not_its_successor() -> None:
    tokens = iter(["old", "new", "newer"])
    auth = ExecAuthenticator(CONFIG, runner=lambda _: ExecCredential(token=next(tokens)))
    old = auth.get()
    auth.invalidate(old)
    new = auth.get()
    assert new.token == "new"
    # A second request that also failed with "old" must not throw "new" away.
    auth.invalidate(old)
    assert auth.get() is new
    assert auth.runs == 2


def prints(status: dict[str, Any]) -> str:
    """A plugin's last line: print this ExecCredential."""
    return f"sys.stdout.write({output(status).decode()!r})\n"


def plugin(tmp_path: Path, body: str) -> ExecConfig:
    """A real plugin: a Python script that records what it was given."""
    script = tmp_path / "plugin.py"
    script.write_text(
        textwrap.dedent(
            """
            import json, os, sys
            record = {"argv": sys.argv[1:], "env": os.environ.get("EXTRA"),
                      "info": json.loads(os.environ["KUBERNETES_EXEC_INFO"]),
                      "stdin_closed": sys.stdin.read() == "", "cwd": os.getcwd()}
            with open(os.path.join(os.path.dirname(__file__), "record.json"), "w") as f:
                json.dump(record, f)
            """
        )
        + textwrap.dedent(body)
    )
    return ExecConfig(
        command=sys.executable,
        api_version=V1,
        args=(str(script), "--flag"),
        env=(("EXTRA", "yes"),),
        interactive_mode=InteractiveMode.IF_AVAILABLE,
        cluster_json='{"server": "https://s"}',
        directory=str(tmp_path),
    )


def test_run_passes_args_env_and_exec_info(tmp_path: Path) -> None:
    config = plugin(
        tmp_path,
        prints({"token": "from-plugin"}),
    )
    credential = run(config, terminal=lambda: False)
    assert credential.token == "from-plugin"
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["argv"] == ["--flag"]
    assert record["env"] == "yes"
    assert record["info"] == {
        "apiVersion": V1,
        "kind": "ExecCredential",
        "spec": {"interactive": False, "cluster": {"server": "https://s"}},
    }
    assert record["stdin_closed"]
    assert record["cwd"] == str(tmp_path)


def test_a_failing_plugin_reports_its_exit_code_and_stderr(tmp_path: Path) -> None:
    config = plugin(tmp_path, 'sys.stderr.write("token expired, run login\\n"); sys.exit(3)')
    with pytest.raises(ExecPluginError, match="exited with 3: token expired, run login"):
        run(config, terminal=lambda: False)


def test_a_missing_plugin_shows_the_install_hint() -> None:
    config = ExecConfig(
        command="/nonexistent/aws-iam-authenticator",
        api_version=V1,
        install_hint="Install it from your cloud's docs.",
    )
    with pytest.raises(ExecPluginError, match="Install it from your cloud's docs"):
        run(config)


def test_interactive_always_needs_a_terminal() -> None:
    config = ExecConfig(command="p", api_version=V1, interactive_mode=InteractiveMode.ALWAYS)
    with pytest.raises(ExecPluginError, match="needs an interactive terminal"):
        run(config, terminal=lambda: False)


def test_interactive_never_does_not_even_look_for_a_terminal(tmp_path: Path) -> None:
    config = plugin(
        tmp_path,
        prints({"token": "t"}),
    )
    never = dataclasses.replace(config, interactive_mode=InteractiveMode.NEVER)

    def terminal() -> bool:
        raise AssertionError("Never must not ask")

    run(never, terminal=terminal)
    assert (
        json.loads((tmp_path / "record.json").read_text())["info"]["spec"]["interactive"] is False
    )
