"""`taskmill worker` refuses bad --handlers with one line and exit 1."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from taskmill.testing.stack import taskmill_command


@pytest.mark.parametrize(
    ("source", "module", "message"),
    [
        (None, "no_such_module", "Error: handler module 'no_such_module' not found"),
        (
            "import taskmill\n\n1 / 0\n",
            "broken",
            "Error: handler module 'broken' failed to import: ZeroDivisionError: division by zero",
        ),
        (
            "import no_such_dependency\n",
            "needs_dep",
            "Error: handler module 'needs_dep' failed to import: ModuleNotFoundError",
        ),
        ("VALUE = 1\n", "empty", "Error: no @taskmill.handler functions found in empty"),
    ],
)
def test_bad_handler_modules_are_one_line_errors(
    tmp_path: Path, source: str | None, module: str, message: str
) -> None:
    if source is not None:
        (tmp_path / f"{module}.py").write_text(source)

    result = subprocess.run(
        taskmill_command("worker", "--handlers", module, "--lease-url", "http://127.0.0.1:9"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


SLOW_TO_LOAD = """
import pathlib, time
import taskmill

here = pathlib.Path(__file__).parent
(here / "loading").touch()
deadline = time.monotonic() + 30
while not (here / "go").exists() and time.monotonic() < deadline:
    time.sleep(0.01)

@taskmill.handler("t")
def t(payload):
    return payload
"""


def test_a_sigterm_while_handlers_load_stops_the_worker_cleanly(tmp_path: Path) -> None:
    (tmp_path / "slow_to_load.py").write_text(SLOW_TO_LOAD)
    process = subprocess.Popen(
        taskmill_command(
            "worker", "--handlers", "slow_to_load", "--lease-url", "http://127.0.0.1:9"
        ),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "loading").exists():
            assert time.monotonic() < deadline, "the handler module never started loading"
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            time.sleep(0.01)
        process.terminate()  # SIGTERM while the module is still loading
        (tmp_path / "go").touch()
        code = process.wait(timeout=30)
    finally:
        process.kill()
    assert code == 0
