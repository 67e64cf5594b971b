"""The ``crds/`` directory: writing the rendered CRDs, and noticing drift.

The directory holds exactly one file per kind, named by ``render.file_name``.
``drift()`` compares it with what ``render`` produces now and describes every
difference (a changed file with a short unified diff, a missing file, a stale
``*.taskmill.dev.yaml`` left from a removed kind); ``write()`` makes it match.
Files that are not Taskmill CRDs are left alone.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from pathlib import Path

from taskmill.crdgen import render
from taskmill.models import base

#: Diff lines shown per changed file: enough to see what moved, not a page.
DIFF_LINES = 40


def expected_files() -> dict[str, str]:
    """File name → content, for every CRD the models define."""
    return {render.file_name(doc): render.crd_yaml(doc) for doc in render.render_crds()}


def write(directory: Path) -> list[str]:
    """Make ``directory`` match the models; the names of the files changed."""
    directory.mkdir(parents=True, exist_ok=True)
    wanted = expected_files()
    changed = []
    for name, text in wanted.items():
        path = directory / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            changed.append(name)
    for stale in _stale(directory, wanted):
        stale.unlink()
        changed.append(stale.name)
    return changed


def drift(directory: Path) -> list[str]:
    """One message per file in ``directory`` that differs from the models."""
    wanted = expected_files()
    problems = []
    for name, text in wanted.items():
        path = directory / name
        if not path.exists():
            problems.append(f"{path}: missing")
            continue
        current = path.read_text()
        if current != text:
            problems.append(f"{path}: differs from the models\n{_diff(current, text, path)}")
    problems.extend(f"{stale}: no model defines this CRD" for stale in _stale(directory, wanted))
    return problems


def _stale(directory: Path, wanted: dict[str, str]) -> Iterator[Path]:
    if directory.is_dir():
        for path in sorted(directory.glob(f"*.{base.GROUP}.yaml")):
            if path.name not in wanted:
                yield path


def _diff(current: str, expected: str, path: Path) -> str:
    lines = list(
        difflib.unified_diff(
            current.splitlines(),
            expected.splitlines(),
            fromfile=f"{path} (committed)",
            tofile=f"{path} (from the models)",
            lineterm="",
            n=2,
        )
    )
    if len(lines) > DIFF_LINES:
        lines = [*lines[:DIFF_LINES], f"... ({len(lines) - DIFF_LINES} more diff lines)"]
    return "\n".join(lines)
