"""Secrets of every kind are masked in log lines, exception texts and URLs."""

from __future__ import annotations

import hashlib
import logging

import pytest

from tap_dataplatforms.core.redact import (
    MASK,
    install_log_redaction,
    redact,
    redact_url,
    register_secret,
)

API_KEY = "dexi-key-5f1c0e2a9b"
DEXI_ACCESS = hashlib.md5(b"account-1" + API_KEY.encode()).hexdigest()  # noqa: S324
TOKEN = "redivis-token-AAAA-BBBB"
PASSWORD = "hunter2-but-longer"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJkZW1vIiwiZXhwIjoxODAwMDAwMDAwfQ."
    "c2lnbmF0dXJlLXBhcnQ"
)


@pytest.fixture(autouse=True)
def _secrets() -> None:
    for secret in (API_KEY, DEXI_ACCESS, TOKEN, PASSWORD):
        register_secret(secret)
    install_log_redaction()


@pytest.mark.parametrize("secret", [API_KEY, DEXI_ACCESS, TOKEN, PASSWORD])
def test_registered_secrets_are_masked(secret: str) -> None:
    text = f"failed with {secret} in the middle"
    assert redact(text) == f"failed with {MASK} in the middle"


def test_unregistered_bearer_tokens_and_jwts_are_masked() -> None:
    assert "abc.def" not in redact("Authorization: Bearer abc.def")
    assert JWT not in redact(f"token={JWT}")
    assert MASK in redact(f"token={JWT}")


def test_url_credentials_are_masked() -> None:
    url = f"https://user:{PASSWORD}@host/invision/api/v1/monitoring?api_key=plain-key&x=1"
    cleaned = redact_url(url)
    assert "plain-key" not in cleaned
    assert PASSWORD not in cleaned
    assert "user" not in cleaned
    assert "x=1" in cleaned
    assert cleaned.startswith("https://host/invision/api/v1/monitoring?")


def test_log_records_are_scrubbed(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("tap-dataplatforms.test")
    with caplog.at_level(logging.INFO):
        logger.info("sending %s with %s", TOKEN, DEXI_ACCESS)
        try:
            raise RuntimeError(f"boom {API_KEY}")
        except RuntimeError:
            logger.exception("failed")
    text = caplog.text
    for secret in (TOKEN, DEXI_ACCESS, API_KEY):
        assert secret not in text
    assert "sending *** with ***" in text
    assert "RuntimeError: boom ***" in text


def test_short_values_are_not_registered() -> None:
    register_secret("ab")
    assert redact("ab cd") == "ab cd"
