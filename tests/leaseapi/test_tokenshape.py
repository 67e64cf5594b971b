"""The pre-filter refuses what cannot be a ServiceAccount token, and nothing that can."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from taskmill.leaseapi.tokenshape import LEEWAY_SECONDS, implausible
from tests.leaseapi.jwts import NOW, jwt, segment


def test_a_well_shaped_token_for_our_audience_may_be_one() -> None:
    assert implausible(jwt("w"), audience="taskmill", now=NOW) is None
    assert implausible(jwt("w", audience=["api", "taskmill"]), audience="taskmill", now=NOW) is None


def test_expiry_and_not_before_allow_the_api_servers_leeway() -> None:
    almost = jwt("w", expires=NOW - LEEWAY_SECONDS + 1, nbf=NOW + LEEWAY_SECONDS - 1)
    assert implausible(almost, audience="taskmill", now=NOW) is None
    assert "expired" in str(implausible(jwt("w", expires=NOW - 61), audience="taskmill", now=NOW))
    assert "not valid yet" in str(implausible(jwt("w", nbf=NOW + 61), audience="taskmill", now=NOW))


def test_claims_of_the_wrong_type_are_refused() -> None:
    header = segment({"alg": "RS256"})
    for claims in (
        [1, 2],
        {"iss": "i", "aud": "taskmill", "exp": "soon"},
        {"iss": "i", "exp": 1e12},
    ):
        token = f"{header}.{segment(claims)}.c2ln"
        assert implausible(token, audience="taskmill", now=NOW) is not None
    unsigned = f"{segment({'alg': 'none'})}.{segment({'iss': 'i', 'aud': 'taskmill'})}.c2ln"
    assert "algorithm" in str(implausible(unsigned, audience="taskmill", now=NOW))
    deep = f"{header}.{segment(b'[' * 5000)}.c2ln"
    assert implausible(deep, audience="taskmill", now=NOW) is not None


@given(st.text(max_size=300))
def test_any_text_gets_an_answer_and_never_an_exception(token: str) -> None:
    reason = implausible(token, audience="taskmill", now=NOW)
    assert reason is None or isinstance(reason, str)


@given(st.lists(st.binary(max_size=60), min_size=3, max_size=3))
def test_base64url_garbage_is_refused(parts: list[bytes]) -> None:
    token = ".".join(segment(p) or "A" for p in parts)
    assert implausible(token, audience="taskmill", now=NOW) is not None
