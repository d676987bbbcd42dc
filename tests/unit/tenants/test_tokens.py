"""Deployment tokens as pure functions: random, prefixed, stored only as SHA-256."""

import hashlib

import pytest

from tenants.tokens import TOKEN_PREFIX, token_digest, token_generate, token_looks_valid


def test_token_generate__twice__different_prefixed_tokens_that_look_valid():
    first, second = token_generate(), token_generate()
    assert first != second
    assert first.startswith(TOKEN_PREFIX)
    assert len(first) == len(TOKEN_PREFIX) + 43
    assert token_looks_valid(first)


def test_token_digest__a_token__is_its_sha256_hex():
    token = token_generate()
    assert token_digest(token) == hashlib.sha256(token.encode()).hexdigest()
    assert token not in token_digest(token)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "rl_",
        "rl_short",
        "xx_" + "a" * 43,
        "RL_" + "a" * 43,
        "rl_" + "a" * 98,
        "rl_" + "é" * 43,
        "Bearer rl_" + "a" * 43,
    ],
)
def test_token_looks_valid__malformed__false(token):
    assert token_looks_valid(token) is False


def test_token_looks_valid__length_bounds__inclusive():
    assert token_looks_valid("rl_" + "a" * 17)
    assert token_looks_valid("rl_" + "a" * 97)
