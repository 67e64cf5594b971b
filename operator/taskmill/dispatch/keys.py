"""Identities the dispatch core keys its structures by."""

from __future__ import annotations

TaskKey = tuple[str, str]
"""``(namespace, name)``: a Task's identity."""
