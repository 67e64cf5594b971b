"""kubectl's JSONPath templates and custom columns (``get -o jsonpath=``,
``-o custom-columns=``): what kubectl prints for the same template."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskmill.cli.formats import parse_columns, parse_output
from taskmill.cli.template import TemplateError, parse_template


def task(name: str, phase: str, **labels: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels, "annotations": {"taskmill.dev/retry": "2"}},
        "spec": {"type": "echo", "dependsOn": [{"name": "a"}, {"name": "b"}]},
        "status": {"phase": phase, "attempts": 2, "result": {"n": 1}},
    }


LIST = {"kind": "List", "items": [task("t1", "Dead", team="x"), task("t2", "Succeeded")]}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{.items[*].metadata.name}", "t1 t2"),
        ("{.items[0].metadata.name}", "t1"),
        ("{.items[-1].status.phase}", "Succeeded"),
        (
            '{range .items[*]}{.metadata.name}{"\\t"}{.status.phase}{"\\n"}{end}',
            "t1\tDead\nt2\tSucceeded\n",
        ),
        ("{range .items}{.metadata.name},{end}", "t1,t2,"),
        ('{.items[?(@.status.phase=="Dead")].metadata.name}', "t1"),
        ("{.items[?(@.status.phase!='Dead')].metadata.name}", "t2"),
        ("{.items[?(@.metadata.labels.team)].metadata.name}", "t1"),
        ("{.items[?(@.status.attempts>1)].metadata.name}", "t1 t2"),
        ("{.items[0].metadata.annotations.taskmill\\.dev/retry}", "2"),
        ("{.items[0].metadata.annotations['taskmill.dev/retry']}", "2"),
        ("{.items[0].status.result}", '{"n":1}'),
        ("{.items[0].status.attempts}", "2"),
        ("{.items[0].spec.dependsOn[*].name}", "a b"),
        ("{..phase}", "Dead Succeeded"),
        ("{.items[0:1].metadata.name}", "t1"),
        ("kind={.kind} first={.items[0].metadata.name}", "kind=List first=t1"),
        ("{range .items[*]}{$.kind}{' '}{end}", "List List "),
        ("{.items[*].status.nothing}", ""),  # missing keys print nothing, as in kubectl get
        ("{.nothing}", ""),
        ("no actions at all", "no actions at all"),
    ],
)
def test_templates_render_like_kubectl(template: str, expected: str) -> None:
    assert parse_template(template).render(LIST) == expected


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{.items", "unclosed action"),
        ("{range .items[*]}{.metadata.name}", "has no {end}"),
        ("{.metadata.name}{end}", "{end} without a {range"),
        ("{}", "empty action"),
        ('{"abc}', "unclosed action"),
        ("{.items[?(@.a==)]}", "cannot parse"),
    ],
)
def test_malformed_templates_say_what_is_wrong(template: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        parse_template(template)


names = st.lists(st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True), max_size=8)


@given(names)
def test_range_prints_one_line_per_item_in_order(items: list[str]) -> None:
    data = {"items": [{"metadata": {"name": n}} for n in items]}
    template = parse_template('{range .items[*]}{.metadata.name}{"\\n"}{end}')

    assert template.render(data) == "".join(f"{n}\n" for n in items)
    assert parse_template("{.items[*].metadata.name}").render(data) == " ".join(items)


@given(st.text().filter(lambda t: "{" not in t))
def test_text_without_actions_is_printed_as_it_is(text: str) -> None:
    assert parse_template(text).render({"a": 1}) == text


@given(st.dictionaries(st.from_regex(r"[a-z]{1,8}", fullmatch=True), st.integers()))
def test_objects_print_as_compact_json(value: dict[str, int]) -> None:
    rendered = parse_template("{.value}").render({"value": value})

    assert json.loads(rendered) == value


def test_custom_columns_take_kubectl_paths_and_print_none_for_missing() -> None:
    columns = parse_columns(
        "NAME:.metadata.name,TEAM:metadata.labels.team,DEPS:{.spec.dependsOn[0,1].name},X:.nope"
    )
    rows = [[c.cell(o) for c in columns] for o in LIST["items"]]

    assert [c.header for c in columns] == ["NAME", "TEAM", "DEPS", "X"]
    assert rows == [["t1", "x", "a,b", "<none>"], ["t2", "<none>", "a,b", "<none>"]]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("bogus", "is not one of json, yaml, wide, name, jsonpath=..., custom-columns=..."),
        ("jsonpath", "jsonpath needs a value"),
        ("jsonpath=", "jsonpath needs a value"),
        ("custom-columns=NAME", "custom-columns wants HEADER:PATH"),
        ("custom-columns=:.a", "custom-columns wants HEADER:PATH"),
        ("jsonpath={.a", "unclosed action"),
    ],
)
def test_bad_output_formats_are_refused(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_output(value)


def test_output_formats_parse() -> None:
    assert parse_output(None).kind == "table"
    assert parse_output("=wide").kind == "wide"  # -o=wide
    assert parse_output("jsonpath={.a}").template is not None
    assert [c.header for c in parse_output("custom-columns=A:.a,B:.b").columns] == ["A", "B"]


label_keys = st.from_regex(
    r"([a-z0-9]([-a-z0-9.]{0,10}[a-z0-9])?/)?[a-z0-9A-Z]([-a-zA-Z0-9_.]{0,10}[a-zA-Z0-9])?",
    fullmatch=True,
)


@given(label_keys, st.text(min_size=1, max_size=20))
def test_any_label_key_is_reachable_with_kubectls_escapes(key: str, value: str) -> None:
    """`{.metadata.labels.app\\.kubernetes\\.io/name}` and `['app.kubernetes.io/name']`."""
    data = {"metadata": {"labels": {key: value, "other": "x"}}}
    escaped = key.replace(".", "\\.")

    assert parse_template(f"{{.metadata.labels.{escaped}}}").render(data) == value
    assert parse_template(f"{{.metadata.labels['{key}']}}").render(data) == value
