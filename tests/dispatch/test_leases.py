from __future__ import annotations

from taskmill.dispatch.leases import LeaseBook, LeaseInfo


def lease(lease_id: str, name: str = "t", expires_at: float = 30.0) -> LeaseInfo:
    return LeaseInfo(
        id=lease_id,
        key=("ns", name),
        uid="u",
        worker="w",
        attempt=1,
        started_at=0.0,
        expires_at=expires_at,
        lease_seconds=30.0,
    )


def test_heartbeats_push_the_expiry_out() -> None:
    book = LeaseBook()
    book.add(lease("a"))

    book.heartbeat("a", now=20)

    assert book.expire(now=31) == []
    assert [x.id for x in book.expire(now=50)] == ["a"]
    assert book.get("a") is None


def test_an_unknown_lease_cannot_heartbeat() -> None:
    assert LeaseBook().heartbeat("nope", now=0) is None


def test_a_removed_lease_never_expires() -> None:
    book = LeaseBook()
    book.add(lease("a"))
    book.remove("a")

    assert book.expire(now=100) == []
    assert book.next_expiry() is None


def test_a_new_lease_on_the_same_task_replaces_the_old_one() -> None:
    book = LeaseBook()
    book.add(lease("old"))
    book.add(lease("new", expires_at=60))

    assert book.get("old") is None
    assert book.for_key(("ns", "t")) == lease("new", expires_at=60)
    assert [x.id for x in book.expire(now=100)] == ["new"]


def test_heartbeats_never_extend_a_lease_past_its_deadline() -> None:
    book = LeaseBook()
    capped = LeaseInfo(
        id="a",
        key=("ns", "t"),
        uid="u",
        worker="w",
        attempt=1,
        started_at=0.0,
        expires_at=30.0,
        lease_seconds=30.0,
        deadline=45.0,
    )
    book.add(capped)

    extended = book.heartbeat("a", now=20)
    later = book.heartbeat("a", now=40)

    assert extended is not None
    assert extended.expires_at == 45.0  # not 50: the deadline caps it
    assert later is not None
    assert later.expires_at == 45.0
    assert [x.id for x in book.expire(now=45.0)] == ["a"]
