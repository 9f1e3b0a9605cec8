"""Access tokens: signed, expiring, bound to issuer and audience."""

import base64
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


@pytest.mark.parametrize("sub", ["user-1\n", "\n", "user-1\r\n", "user-1\n\n", "\nuser-1"])
def test_a_user_id_must_match_whole_not_up_to_a_final_newline(sub):
    service = _service()
    token = jwt.encode({"sub": sub, "iss": "chatrelay", "aud": "app", "iat": 0, "exp": int(time.time()) + 60}, SECRET)
    with pytest.raises(errors.Unauthorized):
        service.verify(token)
    with pytest.raises(errors.InvalidRequest):
        service.issue(sub)


def test_openids_and_refresh_token_users_must_match_whole_too():
    from chatrelay.auth.refresh import _parse
    from chatrelay.auth.wechat import openid_of

    assert openid_of("wx:oAbcdef123") == "oAbcdef123"
    assert openid_of("wx:oAbcdef123\n") is None
    encoded = base64.urlsafe_b64encode(b"user-1\n").decode().rstrip("=")
    with pytest.raises(errors.RefreshTokenInvalid):
        _parse(f"{encoded}.family.secret")


def test_a_remembered_token_still_expires():
    service = _service(ttl=1)
    token = service.issue("user-1")
    assert service.verify(token) == "user-1"
    assert service.verify(token) == "user-1"  # remembered
    time.sleep(2.05)
    with pytest.raises(errors.Unauthorized, match="expired"):
        service.verify(token)


def test_only_verified_tokens_are_remembered():
    service = _service()
    claims = {"sub": "u", "iss": "chatrelay", "aud": "app", "iat": 0, "exp": int(time.time()) + 60}
    forged = jwt.encode(claims, "x" * 40)
    for _ in range(2):
        with pytest.raises(errors.Unauthorized):
            service.verify(forged)
