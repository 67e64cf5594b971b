"""The chart's generated parts (CRD templates, values table) match their sources."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helm.chart import CHART, ROOT


def run_update(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "hack" / "update-chart.py"), *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_chart_crds_and_values_table_are_up_to_date() -> None:
    result = run_update("--check")
    assert result.returncode == 0, result.stderr


def test_every_generated_crd_has_a_chart_template() -> None:
    sources = sorted(p.name for p in (ROOT / "crds").glob("*.yaml"))
    templates = sorted(p.name for p in (CHART / "templates" / "crds").glob("*.yaml"))
    assert sources == templates


def test_chart_crd_bodies_are_the_generated_ones() -> None:
    # Stripping the template lines gives back the generated CRD exactly,
    # apart from the labels helm adds.
    for source in (ROOT / "crds").glob("*.yaml"):
        template = (CHART / "templates" / "crds" / source.name).read_text()
        body = [
            line
            for line in template.splitlines()
            if "{{" not in line and "resource-policy" not in line and line != "  annotations:"
        ]
        generated = [
            line
            for line in source.read_text().splitlines()
            if not line.startswith("#")
            and line != "---"
            and line != "    app.kubernetes.io/part-of: taskmill"
        ]
        assert body == generated, source.name


def test_a_value_without_a_comment_is_refused() -> None:
    sys.path.insert(0, str(ROOT / "hack"))
    import importlib

    module = importlib.import_module("update-chart")
    with pytest.raises(SystemExit, match="keys without a comment: b"):
        module.values_rows("# documented\na: 1\nb: 2\n")
