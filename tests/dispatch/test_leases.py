"""The lease book: claims, leases, heartbeats, revocations, progress."""

from __future__ import annotations

import pytest

from taskmill.dispatch.leases import LeaseBook, LeaseInfo

KEY = ("ns", "t")
LANE = ("ns", "q", "echo")


def lease(lease_id: str, expires_at: float = 30.0, deadline: float = float("inf")) -> LeaseInfo:
    return LeaseInfo(
        id=lease_id,
        key=KEY,
        uid="u",
        worker="w",
        attempt=1,
        started_at=0.0,
        expires_at=expires_at,
        lease_seconds=30.0,
        deadline=deadline,
    )


def claimed() -> LeaseBook:
    book = LeaseBook()
    book.claim(KEY, LANE)
    return book


def test_heartbeats_push_the_expiry_out_until_it_has_passed() -> None:
    book = claimed()
    book.grant(lease("a"))

    extended = book.heartbeat("a", now=20)

    assert extended is not None
    assert extended.expires_at == 50
    assert not extended.expired(49.9)
    assert book.heartbeat("a", now=50) is None  # over: its end is being recorded
    assert book.get("a") is not None  # until the reconciler records it


def test_an_unknown_lease_cannot_heartbeat() -> None:
    assert LeaseBook().heartbeat("nope", now=0) is None


def test_a_lease_needs_a_claim() -> None:
    with pytest.raises(ValueError, match="needs a claim"):
        LeaseBook().grant(lease("a"))


def test_releasing_a_claim_ends_its_lease_and_progress() -> None:
    book = claimed()
    book.grant(lease("a"))
    book.report_progress(lease("a"), {"percent": 5})

    assert book.release(KEY) == (LANE, lease("a"))
    assert book.get("a") is None
    assert book.for_key(KEY) is None
    assert book.unwritten_progress(KEY) is None
    assert book.release(KEY) == (None, None)


def test_a_new_lease_on_the_same_task_replaces_the_old_one() -> None:
    book = claimed()
    book.grant(lease("old"))
    book.grant(lease("new", expires_at=60))

    assert book.get("old") is None
    assert book.for_key(KEY) == lease("new", expires_at=60)


def test_heartbeats_never_extend_a_lease_past_its_deadline() -> None:
    book = claimed()
    book.grant(lease("a", deadline=45.0))

    extended = book.heartbeat("a", now=20)
    later = book.heartbeat("a", now=40)

    assert extended is not None
    assert extended.expires_at == 45.0
    assert later is not None
    assert later.expires_at == 45.0
    assert book.heartbeat("a", now=45.0) is None


def test_a_revoked_lease_is_remembered_for_one_lease_period() -> None:
    book = LeaseBook()
    book.revoke(lease("a"), now=100)
    assert book.revoked("a")
    book.drop_revoked_before(129)
    assert book.revoked("a")
    book.drop_revoked_before(131)
    assert not book.revoked("a")
    book.revoke(lease("b"), now=0)
    assert book.forget_revoked("b")
    assert not book.forget_revoked("b")


def test_progress_is_written_once_and_only_under_the_current_lease() -> None:
    book = claimed()
    book.grant(lease("a"))
    first = {"percent": 10}
    book.report_progress(lease("a"), first)
    assert book.unwritten_progress(KEY) is first
    book.progress_written(KEY, first)
    assert book.unwritten_progress(KEY) is None
    book.report_progress(lease("a"), {"percent": 20})
    book.grant(lease("b"))  # another attempt: the old one's progress no longer matters
    assert book.unwritten_progress(KEY) is None
