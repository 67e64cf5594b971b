"""`taskmill dev` without the testing extra: one line saying what to install."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Runs the real entry point in a fresh interpreter where importing the
# testing extra's modules fails, as it does where the extra is not installed.
BLOCKED = """
import sys

class Missing:
    def find_spec(self, name, path=None, target=None):
        if name == {module!r} or name.startswith({module!r} + "."):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, Missing())
for loaded in [m for m in sys.modules if m == {module!r} or m.startswith({module!r} + ".")]:
    del sys.modules[loaded]
sys.argv = ["taskmill", *{args!r}]
from taskmill.cli.main import main
main()
"""


def run_blocked(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKED.format(module=module, args=list(args))],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("command", [("dev", "up"), ("dev", "env"), ("dev", "down")])
def test_dev_without_the_testing_extra_says_what_to_install(command: tuple[str, ...]) -> None:
    result = run_blocked("cryptography", *command)

    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [
        "error: taskmill dev needs the testing extra (cryptography is not installed): "
        "pip install 'taskmill[testing]'"
    ]
    assert result.stdout == ""


def test_dev_help_works_without_the_extra() -> None:
    result = run_blocked("cryptography", "dev", "--help")

    assert result.returncode == 0, result.stderr
    assert "testing extra" in result.stdout


def test_a_missing_module_of_taskmill_itself_is_not_blamed_on_the_extra() -> None:
    result = run_blocked("taskmill.testing.stack", "dev", "env")

    assert result.returncode == 1
    assert "ModuleNotFoundError" in result.stderr
    assert "taskmill[testing]" not in result.stderr
