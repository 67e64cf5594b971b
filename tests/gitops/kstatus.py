"""The kstatus library, as Flux and cli-utils run it, on objects from the API server.

``hack/kstatus`` is built once with Go (from the module proxy, as the control
plane's binaries are) into Taskmill's cache, keyed by its sources.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from taskmill.testing.assets import cache_dir

SOURCE = Path(__file__).resolve().parents[2] / "hack" / "kstatus"


def build() -> Path | None:
    """The kstatus command, built if needed; None without Go."""
    go = shutil.which("go")
    if go is None:
        return None
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "main.go"):
        digest.update((SOURCE / name).read_bytes())
    binary = cache_dir() / "kstatus" / digest.hexdigest()[:16] / "kstatus"
    if not binary.exists():
        binary.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([go, "build", "-o", str(binary), "."], cwd=SOURCE, check=True, timeout=900)
    return binary


def compute(binary: Path, objects: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """kstatus' (status, message) of each object, by name."""
    run = subprocess.run(
        [str(binary)],
        input="\n".join(json.dumps(o) for o in objects),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    verdicts = [json.loads(line) for line in run.stdout.splitlines()]
    return {v["name"]: (v["status"], v["message"]) for v in verdicts}
