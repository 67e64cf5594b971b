"""Times on the wire: RFC 3339, as the API server writes them."""

from __future__ import annotations

import datetime as dt


def parse_time(text: str) -> dt.datetime:
    """An RFC 3339 time (``2026-01-01T00:00:00Z``, offsets too), timezone-aware.

    Raises ValueError for anything else. A time without an offset is taken
    as UTC, as the API server means it."""
    when = dt.datetime.fromisoformat(text)
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)
