"""The committed ``crds/`` is exactly what the models render today."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskmill.crdgen import __main__ as cli
from taskmill.crdgen import output, render

CRDS = Path(__file__).resolve().parents[2] / "crds"


def test_committed_crds_match_the_models() -> None:
    problems = output.drift(CRDS)
    assert not problems, (
        "crds/ is out of date with operator/taskmill/models; run hack/update-crds.sh "
        "and commit the result:\n" + "\n".join(problems)
    )


def test_every_crd_file_has_the_generated_header() -> None:
    for path in sorted(CRDS.glob("*.yaml")):
        assert path.read_text().startswith(render.HEADER), path


def test_check_fails_and_names_the_file_that_drifted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output.write(tmp_path)
    assert cli.main(["--check", "--dir", str(tmp_path)]) == 0

    edited = tmp_path / "tasks.taskmill.dev.yaml"
    edited.write_text(edited.read_text().replace("shortNames:\n    - tmt", "shortNames:\n    - t"))
    (tmp_path / "gone.taskmill.dev.yaml").write_text("stale")
    (tmp_path / "crontasks.taskmill.dev.yaml").unlink()

    assert cli.main(["--check", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "tasks.taskmill.dev.yaml: differs from the models" in err
    assert "-    - t\n+    - tmt" in err
    assert "crontasks.taskmill.dev.yaml: missing" in err
    assert "gone.taskmill.dev.yaml: no model defines this CRD" in err
    assert "hack/update-crds.sh" in err


def test_write_repairs_drift_and_leaves_other_files_alone(tmp_path: Path) -> None:
    (tmp_path / "tasks.taskmill.dev.yaml").write_text("old")
    (tmp_path / "gone.taskmill.dev.yaml").write_text("stale")
    (tmp_path / "README.md").write_text("mine")

    changed = output.write(tmp_path)

    assert sorted(changed) == sorted([*output.expected_files(), "gone.taskmill.dev.yaml"])
    assert output.drift(tmp_path) == []
    assert (tmp_path / "README.md").read_text() == "mine"
    assert output.write(tmp_path) == []


def test_rendering_is_deterministic() -> None:
    assert output.expected_files() == output.expected_files()
