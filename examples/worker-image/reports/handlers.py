"""Handlers of the example worker image: ``reports.summarize``.

Run them locally with ``taskmill worker --handlers reports.handlers`` from
``examples/worker-image``; in the image they run from ``/app``.
"""

from __future__ import annotations

import statistics
from typing import Any

import taskmill


@taskmill.handler("reports.summarize")
def summarize(payload: dict[str, Any]) -> dict[str, Any]:
    """Summarize ``values`` (a list of numbers): the result lands in status.result."""
    values = [float(v) for v in payload.get("values", [])]
    if not values:
        raise taskmill.Fail("payload.values must be a non-empty list of numbers")
    return {
        "count": len(values),
        "mean": statistics.fmean(values),
        "median": statistics.median(values),
        "max": max(values),
    }
