"""The krew plugin manifest: rendered for a release the way krew-release-bot
renders it, it must be a manifest krew accepts for `kubectl-taskmill`."""

from __future__ import annotations

import hashlib
import io
import re
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

import taskmill

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "krew" / "taskmill.yaml"
RENDER = ROOT / "hack" / "krew-manifest.py"
TAG = f"v{taskmill.__version__}"
PLATFORMS = {("linux", "amd64"), ("linux", "arm64"), ("darwin", "amd64"), ("darwin", "arm64")}
EXECUTABLES = ("kubectl-taskmill", "kubectl_complete-taskmill")


def make_archive(path: Path, members: tuple[str, ...] = EXECUTABLES) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name in members:
            data = f"#!/bin/sh\necho {name} {path.name}\n".encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))


def render(archives: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RENDER), "--tag", TAG, "--archives", str(archives)],
        capture_output=True,
        text=True,
    )


@pytest.fixture
def archives(tmp_path: Path) -> Path:
    for os_, arch in PLATFORMS:
        make_archive(tmp_path / f"kubectl-taskmill-{TAG}-{os_}-{arch}.tar.gz")
    return tmp_path


def test_the_rendered_manifest_is_a_krew_plugin_for_kubectl_taskmill(archives: Path) -> None:
    result = render(archives)
    assert result.returncode == 0, result.stderr
    manifest: dict[str, Any] = yaml.safe_load(result.stdout)

    assert manifest["apiVersion"] == "krew.googlecontainertools.github.com/v1alpha2"
    assert manifest["kind"] == "Plugin"
    # krew-index wants plugins/<name>.yaml, and the name is what `kubectl krew install` takes.
    assert manifest["metadata"]["name"] == TEMPLATE.stem == "taskmill"
    spec = manifest["spec"]
    assert spec["version"] == TAG
    assert re.fullmatch(r"v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?", spec["version"])
    assert spec["homepage"].startswith("https://")
    assert 0 < len(spec["shortDescription"]) <= 50  # krew-index's limit
    assert spec["description"].strip()
    assert "{{" not in result.stdout  # every template action was replaced
    seen = set()
    for platform in spec["platforms"]:
        labels = platform["selector"]["matchLabels"]
        seen.add((labels["os"], labels["arch"]))
        assert platform["bin"] == "kubectl-taskmill"
        assert platform["uri"].startswith("https://")
        assert platform["uri"].endswith(".tar.gz")
        archive = archives / platform["uri"].rsplit("/", 1)[1]
        assert platform["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
        with tarfile.open(archive) as tar:
            members = set(tar.getnames())
        for entry in platform["files"]:
            assert set(entry) == {"from", "to"}
            assert entry["from"] in members
        assert platform["bin"] in {e["from"] for e in platform["files"]}
    assert seen == PLATFORMS
    assert len(spec["platforms"]) == len(PLATFORMS)  # no platform twice


def test_the_executables_krew_would_install_exist_in_the_package() -> None:
    """The manifest's executables are the package's console scripts."""
    text = (ROOT / "pyproject.toml").read_text()
    for name in EXECUTABLES:
        assert re.search(rf'^"?{re.escape(name)}"? = "taskmill\.cli\.', text, re.M), name
        assert (Path(sys.executable).parent / name).exists(), name


def test_a_missing_archive_is_an_error(archives: Path) -> None:
    (archives / f"kubectl-taskmill-{TAG}-darwin-arm64.tar.gz").unlink()

    result = render(archives)

    assert result.returncode != 0
    assert "darwin-arm64.tar.gz not found" in result.stderr
