"""How `get -w` prints: one header, then rows kept to the widest column so far."""

from __future__ import annotations

from typing import Any

import pytest

from taskmill.cli.formats import parse_output
from taskmill.cli.watch import Filters, Printer


def task(name: str, phase: str, **labels: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "labels": labels},
        "spec": {"type": "echo"},
        "status": {"phase": phase, "attempts": 1},
    }


def test_rows_follow_one_header_and_widen_as_needed(capsys: pytest.CaptureFixture[str]) -> None:
    printer = Printer(
        parse_output("custom-columns=NAME:.metadata.name,PHASE:.status.phase"),
        with_namespace=False,
        show_headers=True,
    )
    printer.first([task("a", "Pending")])
    printer.one(task("a", "Running"))
    printer.one(task("a-much-longer-name", "Succeeded"))
    printer.one(task("b", "Dead"))

    assert capsys.readouterr().out.splitlines() == [
        "NAME   PHASE",
        "a      Pending",
        "a      Running",
        "a-much-longer-name   Succeeded",
        "b                    Dead",
    ]


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("name", "task.taskmill.dev/a\n"),
        ('jsonpath={.metadata.name}={.status.phase}{"\\n"}', "a=Dead\n"),
        ("json", '{\n    "metadata": {\n        "name": "a",'),
        ("yaml", "---\nmetadata:\n  name: a\n"),
    ],
)
def test_other_formats_print_each_object(
    output: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    printer = Printer(parse_output(output), with_namespace=False, show_headers=True)
    printer.one(task("a", "Dead"))

    assert capsys.readouterr().out.startswith(expected)


def test_no_headers_and_an_empty_first_list(capsys: pytest.CaptureFixture[str]) -> None:
    printer = Printer(parse_output(None), with_namespace=True, show_headers=False)
    printer.first([])
    printer.one(task("a", "Pending"))

    assert capsys.readouterr().out.split()[:4] == ["ns", "a", "echo", "Pending"]


def test_filters_keep_names_and_phase() -> None:
    both = Filters(frozenset({"a"}), "Dead")

    assert both.keep(task("a", "Dead"))
    assert not both.keep(task("a", "Pending"))
    assert not both.keep(task("b", "Dead"))
    assert Filters(frozenset(), None).keep(task("z", "Running"))
