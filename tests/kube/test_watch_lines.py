"""Watch streams split into events whatever their chunking and line lengths."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskmill.kube.client import _lines


async def collect(chunks: list[bytes]) -> list[bytes]:
    async def stream() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    return [line async for line in _lines(stream())]


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(
        st.binary(min_size=0, max_size=300).map(lambda b: b.replace(b"\n", b"")), max_size=20
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=30),
    final_newline=st.booleans(),
)
def test_lines_come_out_whole_wherever_the_chunks_are_cut(
    lines: list[bytes], cuts: list[int], final_newline: bool
) -> None:
    data = b"\n".join(lines) + (b"\n" if final_newline else b"")
    got = asyncio.run(collect(split(data, cuts)))
    assert got == [line for line in lines if line.strip()]


def test_a_line_longer_than_the_stream_buffer_is_one_event() -> None:
    long = b'{"object": "' + b"x" * 3_000_000 + b'"}'
    chunks = split(long + b"\n" + b"{}\n", list(range(0, 3_100_000, 65_536)))
    assert asyncio.run(collect(chunks)) == [long, b"{}"]


def test_a_stream_that_never_ends_its_line_is_refused_at_the_bound() -> None:
    with (
        mock.patch("taskmill.kube.client.MAX_WATCH_EVENT_BYTES", 1000),
        pytest.raises(ValueError, match="longer than 1000 bytes"),
    ):
        asyncio.run(collect([b"y" * 600, b"y" * 600]))
