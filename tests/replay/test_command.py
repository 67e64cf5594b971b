"""``taskmill replay`` on a file written by ``taskmill get -o json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from taskmill.cli.main import cli
from tests.replay.histories import task_object


def history_file(tmp_path: Path) -> Path:
    items = [task_object(n, i, [(i, i + 5, "Succeeded")]) for i, n in enumerate("abc")]
    items.append(
        task_object("urgent", 3, [(3, 4, "Succeeded")], activeDeadlineSeconds=4, queue="fast")
    )
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    return path


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["replay", *args])


def test_the_table_sets_real_beside_simulated(tmp_path: Path) -> None:
    result = run("-f", str(history_file(tmp_path)), "--order", "fifo", "--workers", "1")

    assert result.exit_code == 0, result.output
    assert "order=fifo, workers=1" in result.output
    assert "queue=fast" in result.output
    assert "type=work" in result.output
    assert "Outcomes that would differ: 1" in result.output
    assert "ns/urgent" in result.output
    assert "Dead (DeadlineExceeded)" in result.output


def test_json_has_every_figure_and_task(tmp_path: Path) -> None:
    result = run("-f", str(history_file(tmp_path)), "--workers", "4", "-o", "json")

    report: dict[str, Any] = json.loads(result.output)
    assert {t["name"] for t in report["tasks"]} == {"a", "b", "c", "urgent"}
    assert set(report["overall"]["wait"]["real"]) == {"count", "p50", "p95", "p99", "max"}
    assert report["policy"]["workers"] == 4
    assert report["makespan"]["simulated"] == 7
    assert report["outcomesDiffering"] == []


def test_chart_writes_a_self_contained_page(tmp_path: Path) -> None:
    chart = tmp_path / "what-if.html"

    result = run("-f", str(history_file(tmp_path)), "--chart", str(chart))

    assert result.exit_code == 0, result.output
    text = chart.read_text()
    assert "<svg" in text
    assert "http" not in text.replace("http://www.w3.org/2000/svg", "")


def test_bad_options_and_files_are_one_line_errors(tmp_path: Path) -> None:
    good = str(history_file(tmp_path))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    queue = tmp_path / "queue.json"
    queue.write_text(json.dumps({"kind": "TaskQueue", "metadata": {"name": "q"}, "spec": {}}))

    assert "TYPE=R/s" in run("-f", good, "--rate", "work").output
    assert "initial,factor,max" in run("-f", good, "--backoff", "1,2").output
    assert ".html or .svg" in run("-f", good, "--chart", str(tmp_path / "x.png")).output
    not_json = run("-f", str(bad))
    assert not_json.exit_code == 1
    assert "is not JSON" in not_json.output
    assert "is a TaskQueue, not a Task" in run("-f", str(queue)).output
    assert "cannot read" in run("-f", str(tmp_path / "missing.json")).output
