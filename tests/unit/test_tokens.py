"""Access tokens: signed, expiring, bound to issuer and audience."""

import time

import jwt
import pytest

from chatrelay import errors
from chatrelay.auth.tokens import TokenService

SECRET = "s" * 40


def _service(**kw) -> TokenService:
    return TokenService(SECRET, issuer=kw.get("issuer", "chatrelay"), audience=kw.get("audience", "app"),
                        ttl_seconds=kw.get("ttl", 60))


def test_round_trip():
    service = _service()
    assert service.verify(service.issue("user-1")) == "user-1"


@pytest.mark.parametrize(
    "token",
    [
        jwt.encode({"sub": "u", "iss": "chatrelay", "aud": "app", "iat": 0, "exp": int(time.time()) - 10}, SECRET),
        jwt.encode({"sub": "u", "iss": "chatrelay", "aud": "other", "iat": 0, "exp": int(time.time()) + 60}, SECRET),
        jwt.encode({"sub": "u", "iss": "evil", "aud": "app", "iat": 0, "exp": int(time.time()) + 60}, SECRET),
        jwt.encode({"sub": "u", "iss": "chatrelay", "aud": "app", "iat": 0, "exp": int(time.time()) + 60}, "x" * 40),
        jwt.encode({"sub": "u", "iss": "chatrelay", "aud": "app", "iat": 0}, SECRET),
        jwt.encode({"sub": "u#x", "iss": "chatrelay", "aud": "app", "iat": 0, "exp": int(time.time()) + 60}, SECRET),
        "garbage",
    ],
    ids=["expired", "wrong-audience", "wrong-issuer", "wrong-key", "no-exp", "bad-sub", "garbage"],
)
def test_refused_tokens(token):
    with pytest.raises(errors.Unauthorized):
        _service().verify(token)


def test_alg_none_is_refused():
    service = _service()
    good = service.issue("u")
    header, payload, _ = good.split(".")
    forged = jwt.utils.base64url_encode(b'{"alg":"none","typ":"JWT"}').decode() + "." + payload + "."
    with pytest.raises(errors.Unauthorized):
        service.verify(forged)


def test_short_secret_is_refused():
    with pytest.raises(ValueError):
        TokenService("short", issuer="i", audience="a", ttl_seconds=1)
