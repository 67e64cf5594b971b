"""JWT-shaped tokens for unit tests: the shape of a ServiceAccount token, no real signature."""

from __future__ import annotations

import base64
import json
from typing import Any

#: The wall clock the unit tests authenticate at (seconds since the epoch).
NOW = 1_800_000_000.0


def segment(value: Any) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwt(
    name: str,
    *,
    audience: str | list[str] = "taskmill",
    expires: float = NOW + 3600,
    issuer: str = "https://kubernetes.default.svc.cluster.local",
    **claims: Any,
) -> str:
    """A token whose ``jti`` is ``name``, so a fake TokenReview can look it up."""
    body = {"iss": issuer, "aud": audience, "exp": expires, "jti": name, **claims}
    return ".".join([segment({"alg": "RS256", "kid": "k1"}), segment(body), segment(b"sig")])


def name_of(token: str) -> str:
    claims = token.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))["jti"])
