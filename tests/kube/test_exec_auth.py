"""The SDK and the CLI against the real API server with kubeconfigs as clusters hand out.

The exec plugin is a small Python script written by each test. It hands out
ServiceAccount tokens minted with the TokenRequest API (or the admin's client
certificate), counts its runs, and records the ``KUBERNETES_EXEC_INFO`` it was
given. RBAC is enforced, so a request that works proves the plugin's
credential was sent.
"""

from __future__ import annotations

import asyncio
import json
import select
import socket
import socketserver
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from taskmill.client.aio import AsyncClient
from taskmill.client.sync import Client
from taskmill.kube.client import ApiError, path
from taskmill.testing.controlplane import ControlPlane, free_ports
from taskmill.testing.stack import spawn, taskmill_command, wait_until_ready
from tests.e2e.helpers import apply, task, wait_phase

PLUGIN = textwrap.dedent(
    """
    import json, os, pathlib, sys
    here = pathlib.Path(__file__).parent
    runs = int((here / "runs").read_text()) + 1 if (here / "runs").exists() else 1
    (here / "runs").write_text(str(runs))
    info = json.loads(os.environ["KUBERNETES_EXEC_INFO"])
    (here / f"info-{runs}.json").write_text(json.dumps(info))
    if (here / "cert").exists():
        status = {"clientCertificateData": (here / "cert").read_text(),
                  "clientKeyData": (here / "key").read_text()}
    else:
        tokens = (here / "tokens").read_text().split()  # one per run; the last repeats
        status = {"token": tokens[min(runs, len(tokens)) - 1]}
    if (here / "expires").exists():
        status["expirationTimestamp"] = (here / "expires").read_text().strip()
    print(json.dumps({"apiVersion": info["apiVersion"], "kind": "ExecCredential",
                      "status": status}))
    """
)


@dataclass
class Plugin:
    plane: ControlPlane
    namespace: str
    directory: Path
    token: str

    @property
    def runs(self) -> int:
        runs = self.directory / "runs"
        return int(runs.read_text()) if runs.exists() else 0

    def reset(self) -> None:
        (self.directory / "runs").unlink(missing_ok=True)

    def hand_out(self, *tokens: str, expires: str | None = None) -> None:
        (self.directory / "tokens").write_text("\n".join(tokens))
        if expires is None:
            (self.directory / "expires").unlink(missing_ok=True)
        else:
            (self.directory / "expires").write_text(expires)

    def info(self, run: int) -> dict[str, Any]:
        info: dict[str, Any] = json.loads((self.directory / f"info-{run}.json").read_text())
        return info

    def kubeconfig(
        self, *, api_version: str = "client.authentication.k8s.io/v1", **cluster: Any
    ) -> Path:
        import base64

        entry: dict[str, Any] = {"server": self.plane.server}
        if not cluster.pop("no_ca", False):
            entry["certificate-authority-data"] = base64.b64encode(
                self.plane.ca_path.read_bytes()
            ).decode()
        entry.update(cluster)
        exec_stanza: dict[str, Any] = {
            "apiVersion": api_version,
            "command": sys.executable,
            "args": [str(self.directory / "plugin.py")],
            "provideClusterInfo": True,
        }
        if api_version.endswith("/v1"):
            exec_stanza["interactiveMode"] = "Never"
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": entry}],
            "users": [{"name": "plugin-user", "user": {"exec": exec_stanza}}],
            "contexts": [
                {
                    "name": "ctx",
                    "context": {"cluster": "c", "user": "plugin-user", "namespace": self.namespace},
                }
            ],
            "current-context": "ctx",
        }
        target = self.directory / "kubeconfig"
        target.write_text(yaml.safe_dump(doc))
        return target


@pytest.fixture
def plugin(crds: ControlPlane, namespace: str, tmp_path: Path) -> Plugin:
    """A ServiceAccount that may use Tasks in ``namespace`` only, and a
    plugin handing out its token."""
    plane = crds
    ns, rbac = (
        f"/api/v1/namespaces/{namespace}",
        (f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"),
    )
    assert (
        plane.request("POST", f"{ns}/serviceaccounts", {"metadata": {"name": "sdk"}}).status == 201
    )
    rules = [
        {
            "apiGroups": ["taskmill.dev"],
            "resources": ["tasks"],
            "verbs": ["get", "list", "watch", "create", "patch"],
        }
    ]
    role = {"metadata": {"name": "sdk"}, "rules": rules}
    assert plane.request("POST", f"{rbac}/roles", role).status == 201
    binding = {
        "metadata": {"name": "sdk"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "sdk"},
        "subjects": [{"kind": "ServiceAccount", "name": "sdk", "namespace": namespace}],
    }
    assert plane.request("POST", f"{rbac}/rolebindings", binding).status == 201
    (tmp_path / "plugin.py").write_text(PLUGIN)
    found = Plugin(plane, namespace, tmp_path, plane.create_token("sdk", namespace))
    found.hand_out(found.token)
    return found


def test_sdk_authenticates_with_the_plugin_and_caches_its_token(plugin: Plugin) -> None:
    plugin.hand_out(plugin.token, expires="2099-01-01T00:00:00Z")
    with Client(kubeconfig=str(plugin.kubeconfig())) as client:
        assert client.namespace == plugin.namespace  # the context's
        client.submit("echo", {"n": 1}, name="via-exec")
        assert client.get("via-exec").spec.type == "echo"
        assert [t.metadata.name for t in client.list()] == ["via-exec"]
        # As the ServiceAccount, not as anyone more: other namespaces are forbidden.
        with pytest.raises(ApiError) as refused:
            client.list(namespace="default")
        assert refused.value.status == 403
    assert plugin.runs == 1  # five requests, one run: cached until 2099
    info = plugin.info(1)
    assert info["apiVersion"] == "client.authentication.k8s.io/v1"
    assert info["spec"]["interactive"] is False
    assert info["spec"]["cluster"]["server"] == plugin.plane.server
    assert info["spec"]["cluster"]["certificate-authority-data"]


def test_cli_authenticates_with_a_v1beta1_plugin(plugin: Plugin) -> None:
    kubeconfig = plugin.kubeconfig(api_version="client.authentication.k8s.io/v1beta1")
    env = {"KUBECONFIG": str(kubeconfig), "PATH": "/usr/bin:/bin", "HOME": str(plugin.directory)}
    submitted = subprocess.run(
        taskmill_command("submit", "echo", "--name", "cli-exec"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert submitted.returncode == 0, submitted.stderr
    listed = subprocess.run(
        taskmill_command("list", "-o", "name"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert "cli-exec" in listed.stdout
    assert plugin.info(1)["apiVersion"] == "client.authentication.k8s.io/v1beta1"


def test_cli_reports_a_failing_plugin_in_one_line(plugin: Plugin) -> None:
    (plugin.directory / "plugin.py").write_text(
        "import sys\nsys.stderr.write('SSO session expired; run: sso login\\n')\nsys.exit(2)\n"
    )
    env = {"KUBECONFIG": str(plugin.kubeconfig()), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        taskmill_command("list"), env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert "exited with 2: SSO session expired; run: sso login" in result.stderr
    assert "Traceback" not in result.stderr


def rfc3339(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def test_an_expiring_token_is_fetched_again_after_its_expiry(plugin: Plugin) -> None:
    expires = int(time.time()) + 3
    plugin.hand_out(plugin.token, expires=rfc3339(expires))
    with Client(kubeconfig=str(plugin.kubeconfig())) as client:
        deadline = time.monotonic() + 30
        while plugin.runs < 2:
            before = time.time()
            client.list()
            if plugin.runs == 1:
                # Served from the cache: its expiry had not yet come.
                assert before < expires
            assert time.monotonic() < deadline, "the plugin never ran again"
            time.sleep(0.1)
        assert time.time() >= expires


def test_a_refused_token_runs_the_plugin_again_and_retries_once(plugin: Plugin) -> None:
    plugin.hand_out("revoked-token", plugin.token)
    with Client(kubeconfig=str(plugin.kubeconfig())) as client:
        assert client.list() == []
    assert plugin.runs == 2
    # Refused again after the second run: the 401 is the caller's, after one retry.
    plugin.reset()
    plugin.hand_out("revoked-token")
    with Client(kubeconfig=str(plugin.kubeconfig())) as client, pytest.raises(ApiError) as refused:
        client.list()
    assert refused.value.status == 401
    assert plugin.runs == 2


def test_a_watch_runs_the_plugin_again_on_a_401(plugin: Plugin) -> None:
    """The long-running paths (``taskmill top``, the SDK's wait) watch."""
    plugin.hand_out("revoked-token", plugin.token)

    async def watch() -> list[dict[str, Any]]:
        async with AsyncClient(kubeconfig=str(plugin.kubeconfig())) as client:
            url = path("tasks", plugin.namespace)
            return [e async for e in client.kube.watch(url, timeout_seconds=1)]

    asyncio.run(watch())
    assert plugin.runs == 2


def test_client_certificates_from_the_plugin(plugin: Plugin) -> None:
    (plugin.directory / "cert").write_text(plugin.plane.admin_cert_path.read_text())
    (plugin.directory / "key").write_text(plugin.plane.admin_key_path.read_text())
    with Client(kubeconfig=str(plugin.kubeconfig())) as client:
        client.list(namespace="default")  # the admin may; the ServiceAccount may not
    assert plugin.runs == 1


def test_tls_server_name_is_the_name_checked(plugin: Plugin) -> None:
    good = plugin.kubeconfig(**{"tls-server-name": "kubernetes.default.svc"})
    with Client(kubeconfig=str(good)) as client:
        assert client.list() == []
    bad = plugin.kubeconfig(**{"tls-server-name": "wrong.example"})
    with Client(kubeconfig=str(bad)) as client, pytest.raises(OSError, match=r"wrong\.example"):
        client.list()


def test_insecure_skip_tls_verify_connects_without_a_ca(plugin: Plugin) -> None:
    without_ca = plugin.kubeconfig(no_ca=True)
    with (
        Client(kubeconfig=str(without_ca)) as client,
        pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        client.list()
    insecure = plugin.kubeconfig(no_ca=True, **{"insecure-skip-tls-verify": True})
    with Client(kubeconfig=str(insecure)) as client:
        assert client.list() == []


class ConnectProxy(socketserver.ThreadingTCPServer):
    """An HTTP CONNECT proxy on loopback that counts the tunnels it opened."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Tunnel)
        self.tunnels: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Tunnel(socketserver.StreamRequestHandler):
    server: ConnectProxy

    def handle(self) -> None:
        request = self.rfile.readline().decode()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        method, target, _ = request.split(" ", 2)
        if method != "CONNECT":
            self.wfile.write(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            return
        host, port = target.rsplit(":", 1)
        self.server.tunnels.append(target)
        with socket.create_connection((host, int(port)), timeout=10) as upstream:
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()
            sockets = [self.connection, upstream]
            while True:
                readable, _, _ = select.select(sockets, [], [], 10)
                if not readable:
                    return
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (upstream if sock is self.connection else self.connection).sendall(data)


def test_proxy_url_carries_the_requests(plugin: Plugin) -> None:
    proxy = ConnectProxy()
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        kubeconfig = plugin.kubeconfig(**{"proxy-url": proxy.url})
        with Client(kubeconfig=str(kubeconfig)) as client:
            assert client.list() == []
        assert proxy.tunnels == [plugin.plane.server.removeprefix("https://")]
    finally:
        proxy.shutdown()
        proxy.server_close()


def test_the_operator_runs_on_an_exec_plugin_credential(
    lone_plane: ControlPlane, lone_namespace: str, tmp_path: Path
) -> None:
    """kopf's watches, the engine's writes and the CronTask child process all
    authenticate with the plugin's client certificate."""
    plugin = Plugin(lone_plane, lone_namespace, tmp_path, token="")
    (tmp_path / "plugin.py").write_text(PLUGIN)
    (tmp_path / "cert").write_text(lone_plane.admin_cert_path.read_text())
    (tmp_path / "key").write_text(lone_plane.admin_key_path.read_text())
    port = free_ports(1)[0]
    operator = spawn(
        "operator",
        taskmill_command(
            "operator",
            "--kubeconfig",
            str(plugin.kubeconfig()),
            "--namespace",
            lone_namespace,
            "--lease-host",
            "127.0.0.1",
            "--lease-port",
            str(port),
            "--no-worker-after-seconds",
            "1",
        ),
        tmp_path / "operator.log",
    )
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/readyz", operator, 60)
        apply(lone_plane, lone_namespace, task("nobody-runs-me", "no-such-handler"))
        done = wait_phase(lone_plane, lone_namespace, "nobody-runs-me", "Waiting", timeout=60)
        assert done["status"]["reason"] == "NoWorker"
        assert plugin.runs >= 1
        assert operator.alive(), operator.log_tail()
        assert "Traceback" not in operator.log_tail(200), operator.log_tail(200)
    finally:
        operator.stop(10)


def client_cert(plane: ControlPlane, user: str) -> tuple[str, str]:
    """A client certificate for ``user`` (no groups), signed by the plane's CA."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca_cert = x509.load_pem_x509_certificate(plane.ca_path.read_bytes())
    ca_key = serialization.load_pem_private_key((plane.pki_dir / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


def _list_refusal(client: Client) -> ApiError | None:
    try:
        client.list(namespace="default")
    except ApiError as refused:
        return refused
    return None


def test_a_new_client_certificate_gets_new_connections(plugin: Plugin) -> None:
    (plugin.directory / "cert").write_text(plugin.plane.admin_cert_path.read_text())
    (plugin.directory / "key").write_text(plugin.plane.admin_key_path.read_text())
    expires = int(time.time()) + 3
    (plugin.directory / "expires").write_text(rfc3339(expires))
    with Client(kubeconfig=str(plugin.kubeconfig())) as client:
        client.list(namespace="default")  # as the admin
        # The next run of the plugin hands out the certificate of a user with no rights.
        cert, key = client_cert(plugin.plane, "nobody-in-particular")
        (plugin.directory / "cert").write_text(cert)
        (plugin.directory / "key").write_text(key)
        (plugin.directory / "expires").write_text(rfc3339(time.time() + 3600))
        deadline = time.monotonic() + 30
        while (refused := _list_refusal(client)) is None:
            assert plugin.runs == 1, "a new certificate was not used"
            assert time.monotonic() < deadline, "the plugin never ran again"
            time.sleep(0.1)
    assert refused.status == 403
    assert "nobody-in-particular" in refused.message
    assert plugin.runs == 2
    assert time.time() >= expires
