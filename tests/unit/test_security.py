"""Session token signing, shared-secret checks."""

import time

import jwt
import pytest

from models.security import (
    SESSION_AUDIENCE,
    Identity,
    InvalidSession,
    SessionSigner,
    matches_hash,
    same_secret,
    token_hash,
)

IDENTITY = Identity(
    member_id="m1", user_id=7, portal_id=3, domain="acme.bitrix24.ru", name="Иван Петров", is_admin=True
)
KEY = "k" * 40


def test_round_trip():
    signer = SessionSigner(KEY, 900)
    token, exp = signer.issue(IDENTITY)
    assert exp - time.time() <= 900
    assert signer.verify(token) == IDENTITY
    claims = jwt.decode(token, KEY, algorithms=["HS256"], audience=SESSION_AUDIENCE)
    assert claims["sub"] == "m1:7"


def test_expired_token_is_refused():
    signer = SessionSigner(KEY, 900)
    token, _ = signer.issue(IDENTITY, now=time.time() - 1000)
    with pytest.raises(InvalidSession):
        signer.verify(token)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: dict(c, aud="other"),
        lambda c: dict(c, iss="someone-else"),
    ],
)
def test_wrong_audience_or_issuer(mutate):
    signer = SessionSigner(KEY, 900)
    token, _ = signer.issue(IDENTITY)
    claims = jwt.decode(token, KEY, algorithms=["HS256"], audience=SESSION_AUDIENCE)
    forged = jwt.encode(mutate(claims), KEY, algorithm="HS256")
    with pytest.raises(InvalidSession):
        signer.verify(forged)


def test_wrong_key_and_none_alg_are_refused():
    token, _ = SessionSigner("x" * 40, 900).issue(IDENTITY)
    with pytest.raises(InvalidSession):
        SessionSigner(KEY, 900).verify(token)
    unsigned = jwt.encode(
        {"sub": "m1:7", "aud": SESSION_AUDIENCE, "iss": "b24-telemost", "exp": 2**31, "iat": 1, "pid": 3, "dom": "x"},
        None,
        algorithm="none",
    )
    with pytest.raises(InvalidSession):
        SessionSigner(KEY, 900).verify(unsigned)


def test_secret_helpers():
    assert matches_hash("abc", token_hash("abc"))
    assert not matches_hash("abd", token_hash("abc"))
    assert not matches_hash("", token_hash(""))
    assert same_secret("a" * 10, "a" * 10)
    assert not same_secret("", "")
    assert not same_secret(None, "x")
