"""Figures, the chart, and the tolerance of a replay."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from hypothesis import given
from hypothesis import strategies as st

from taskmill.replay import chart
from taskmill.replay.report import figures, within_tolerance


def test_percentiles_are_nearest_rank() -> None:
    result = figures([float(v) for v in range(1, 101)])

    assert (result.count, result.p50, result.p95, result.p99, result.max) == (100, 50, 95, 99, 100)
    assert figures([3.0, None, 1.0]).p50 == 1.0
    assert figures([None]).count == 0


@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1))
def test_each_figure_is_one_of_the_values_and_they_rise(values: list[float]) -> None:
    result = figures(values)

    got = [result.p50, result.p95, result.p99, result.max]
    assert all(v in values for v in got)
    assert got == sorted(got)  # type: ignore[type-var]
    assert result.max == max(values)


def test_the_tolerance_is_a_second_plus_a_fraction() -> None:
    assert within_tolerance(10.0, 12.4)
    assert not within_tolerance(10.0, 12.6)
    assert within_tolerance(0.0, 1.0)


def test_the_chart_is_an_svg_with_both_lines_and_html_around_it() -> None:
    real = [10.0 + i for i in range(5)]
    simulated = [10.0 + i / 2 for i in range(5)]

    picture = ET.fromstring(chart.svg(real, simulated, 10.0, "what <if>"))
    page = chart.page(real, simulated, 10.0, "what if")

    paths = [e for e in picture.iter() if e.tag.endswith("path")]
    assert len(paths) == 2
    assert all(p.get("d") for p in paths)
    assert "what <if>" in "".join(picture.itertext())
    assert page.startswith("<!DOCTYPE html>")
    assert "<svg" in page


def test_a_large_chart_is_thinned() -> None:
    ends = [float(i) for i in range(100_000)]

    assert len(chart.svg(ends, ends, 0.0, "big")) < 200_000
