"""CronTask child names and labels: deterministic, valid, unique."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from taskmill.controller.cron import child_name, label_value
from taskmill.models.base import DNS_SUBDOMAIN

LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
NAMES = st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", fullmatch=True).filter(
    lambda n: re.fullmatch(DNS_SUBDOMAIN, n) is not None
)


def test_a_child_is_named_after_its_crontask_and_slot() -> None:
    assert child_name("nightly", 1_795_827_600.0) == "nightly-1795827600"
    assert label_value("nightly") == "nightly"


def test_a_long_crontask_name_is_cut_and_hashed() -> None:
    long_a, long_b = "a" * 250, "a" * 249 + "b"

    name_a, name_b = child_name(long_a, 1_795_827_600), child_name(long_b, 1_795_827_600)

    assert len(name_a) == 253
    assert name_a != name_b
    assert name_a.endswith("-1795827600")
    assert len(label_value(long_a)) == 63
    assert label_value(long_a) != label_value(long_b)


@given(name=NAMES, slot=st.integers(min_value=0, max_value=9_999_999_999))
def test_child_names_are_valid_dns_subdomains(name: str, slot: int) -> None:
    child = child_name(name, slot)

    assert len(child) <= 253
    assert re.fullmatch(DNS_SUBDOMAIN, child), child
    assert child.endswith(f"-{slot}")
    assert child == child_name(name, slot)
    assert LABEL_VALUE.fullmatch(label_value(name))
    assert len(label_value(name)) <= 63
