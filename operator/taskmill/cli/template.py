"""kubectl's JSONPath templates, for ``-o jsonpath=...`` and ``-o custom-columns=...``.

A template is text with actions in braces, as kubectl writes them::

    {.items[*].metadata.name}
    {range .items[*]}{.metadata.name}{"\\t"}{.status.phase}{"\\n"}{end}
    {.items[?(@.status.phase=="Dead")].metadata.name}

The path inside an action is evaluated by jsonpath-ng (its ``ext`` dialect,
for filters): it covers kubectl's paths (children, ``[*]``, indexes and
slices, unions, ``..``, filters with ``== != < <= > >=``, ``&&``, ``||``),
so only the template around it is parsed here: literal text, quoted strings
(``{"\\n"}``), ``{range PATH}...{end}``, and kubectl's ``\\.`` escapes in
keys (``{.metadata.labels.app\\.kubernetes\\.io/name}``), which jsonpath-ng
spells as a quoted key. Like ``kubectl get`` (``--allow-missing-template-keys``
is on by default there) a path that matches nothing prints nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any


class TemplateError(ValueError):
    """A template that cannot be parsed; the message says where."""


@dataclass(frozen=True)
class Path:
    """One compiled path; ``absolute`` ones start at the root (``$``), the
    others at the current object (the root, or the item of a ``range``)."""

    source: str
    absolute: bool
    compiled: Any

    def find(self, root: Any, current: Any) -> list[Any]:
        return [match.value for match in self.compiled.find(root if self.absolute else current)]


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Range:
    path: Path
    body: tuple[Node, ...]


Node = Text | Path | Range


@dataclass(frozen=True)
class Template:
    source: str
    nodes: tuple[Node, ...]

    def render(self, data: Any) -> str:
        parts: list[str] = []
        _render(self.nodes, data, data, parts)
        return "".join(parts)


def parse_template(source: str) -> Template:
    """Parse a kubectl JSONPath template; :class:`TemplateError` if malformed."""
    stack: list[tuple[Path | None, list[Node]]] = [(None, [])]
    pos = 0
    while pos < len(source):
        start = source.find("{", pos)
        if start == -1:
            stack[-1][1].append(Text(source[pos:]))
            break
        if start > pos:
            stack[-1][1].append(Text(source[pos:start]))
        end = _action_end(source, start + 1)
        action = source[start + 1 : end].strip()
        pos = end + 1
        if not action:
            raise TemplateError(f"empty action {{}} at column {start + 1}")
        if action == "end":
            path, body = stack.pop()
            if path is None:
                raise TemplateError("{end} without a {range ...}")
            stack[-1][1].append(Range(path, tuple(body)))
        elif action.startswith("range ") or action.startswith("range\t"):
            stack.append((compile_path(action[len("range") :].strip()), []))
        elif action[0] in "\"'":
            stack[-1][1].append(Text(_unquote(action)))
        else:
            stack[-1][1].append(compile_path(action))
    if len(stack) > 1:
        raise TemplateError("a {range ...} has no {end}")
    return Template(source, tuple(stack[0][1]))


def compile_path(source: str) -> Path:
    """Compile one kubectl path (``.a.b``, ``$.a``, ``@.a``, or the relaxed ``a.b``)."""
    from jsonpath_ng.ext.parser import parse

    text = source.strip()
    if not text:
        raise TemplateError("empty path")
    absolute = text.startswith("$")
    if text[0] in "$@":
        text = text[1:]
    elif text[0] not in ".[":
        text = "." + text  # custom-columns also take paths without the leading dot
    try:
        compiled = parse("$" + _quote_escaped_keys(text))
    except Exception as exc:  # jsonpath-ng raises several unrelated types
        raise TemplateError(f"cannot parse {source!r}: {exc}") from None
    return Path(source, absolute, compiled)


def format_value(value: Any) -> str:
    """A value as kubectl prints it: strings bare, everything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _render(nodes: Sequence[Node], root: Any, current: Any, parts: list[str]) -> None:
    for node in nodes:
        if isinstance(node, Text):
            parts.append(node.text)
        elif isinstance(node, Path):
            parts.append(" ".join(format_value(v) for v in node.find(root, current)))
        else:
            items = node.path.find(root, current)
            # `{range .items}` and `{range .items[*]}` both walk the items.
            if len(items) == 1 and isinstance(items[0], list):
                items = items[0]
            for item in items:
                _render(node.body, root, item, parts)


def _action_end(source: str, pos: int) -> int:
    """The index of the ``}`` closing the action that starts at ``pos``
    (braces inside quotes, brackets or parentheses do not count)."""
    for i, char, depth in _unquoted(source, pos):
        if char == "}" and depth <= 0:
            return i
    raise TemplateError(f"unclosed action at column {pos}: {source[pos - 1 :]!r}")


def _unquote(action: str) -> str:
    quote = action[0]
    if len(action) < 2 or action[-1] != quote:
        raise TemplateError(f"unterminated string {action!r}")
    inner = action[1:-1]
    if quote == "'":
        inner = inner.replace('"', '\\"').replace("\\'", "'")
    try:
        text: str = json.loads('"' + inner + '"')
    except json.JSONDecodeError:
        raise TemplateError(f"bad string {action!r}") from None
    return text


def _quote_escaped_keys(path: str) -> str:
    """Rewrite kubectl's ``.a\\.b/c`` keys as jsonpath-ng's ``.'a.b/c'``.

    Every key outside brackets is quoted: unquoted, jsonpath-ng would read
    ``.00`` as a number and ``.sorted`` as its own operator, where kubectl
    reads both as keys.
    """
    out: list[str] = []
    i = 0
    while i < len(path):
        char = path[i]
        if char == "[" or char == "(":
            end = _bracket_end(path, i)
            out.append(path[i:end])
            i = end
        elif char == ".":
            out.append(".")
            i += 1
            start = i
            while i < len(path) and path[i] not in ".[(":
                i += 2 if path[i] == "\\" else 1
            out.append(_quoted(path[start:i].replace("\\.", ".").replace("\\", "")))
        else:
            out.append(char)
            i += 1
    return "".join(out)


def _quoted(key: str) -> str:
    if key in ("", "*"):  # `..` (recursive descent) and the wildcard stay as they are
        return key
    if "'" not in key:
        return f"'{key}'"
    if '"' not in key:
        return f'"{key}"'
    return "'" + key.replace("'", "\\'") + "'"


def _bracket_end(path: str, start: int) -> int:
    for i, char, depth in _unquoted(path, start):
        if char in ")]" and depth == 0:
            return i + 1
    return len(path)


def _unquoted(text: str, start: int) -> Iterator[tuple[int, str, int]]:
    """Each character of ``text`` from ``start`` that is outside quotes, with
    the bracket and parenthesis depth after it (a backslash escapes in quotes)."""
    depth = 0
    quote = ""
    i = start
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        else:
            if char in "[(":
                depth += 1
            elif char in ")]":
                depth -= 1
            yield i, char, depth
        i += 1
