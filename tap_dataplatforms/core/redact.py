"""Keep secrets out of logs, errors, state and records.

Every secret the tap learns (configured keys, derived digests, tokens issued at run
time) is registered here; every log record is scrubbed on creation, and error
messages are built with :func:`redact`.
"""

from __future__ import annotations

import logging
import re
import threading
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
_MIN_SECRET_LENGTH = 4
# Query parameters that carry credentials on some platform (InVision's `api_key`, the
# obsolete Redivis `access_token`), masked even when their value was never registered.
_SECRET_PARAMS = frozenset(
    {"api_key", "apikey", "key", "token", "access_token", "password", "secret", "signature"}
)
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")

_lock = threading.Lock()
_secrets: tuple[str, ...] = ()
_installed = False


def register_secret(value: object) -> None:
    """Remember a secret so it is masked wherever it would appear."""
    global _secrets
    if not isinstance(value, str) or len(value) < _MIN_SECRET_LENGTH:
        return
    with _lock:
        if value not in _secrets:
            # Longest first, so a secret containing another is masked whole.
            _secrets = tuple(sorted((*_secrets, value), key=len, reverse=True))


def redact(text: str) -> str:
    """Mask every registered secret, bearer token and JWT in ``text``."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    if "earer" in text:
        text = _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)
    if "eyJ" in text:
        text = _JWT.sub(MASK, text)
    return text


def redact_url(url: str) -> str:
    """A URL fit for a log line: credential parameters masked, secrets removed."""
    parts = urlsplit(url)
    query = parts.query
    if query:
        pairs = [
            (k, MASK if k.lower() in _SECRET_PARAMS else v)
            for k, v in parse_qsl(query, keep_blank_values=True)
        ]
        query = urlencode(pairs, safe="*:/")
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return redact(urlunsplit((parts.scheme, netloc, parts.path, query, "")))


def install_log_redaction() -> None:
    """Scrub every log record created in this process, once per process."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if not _secrets and record.exc_info is None:
            return record
        try:
            message = record.getMessage()
        except Exception:  # a malformed call must not hide the record
            return record
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            formatter = logging.Formatter()
            record.exc_text = redact(formatter.formatException(record.exc_info))
            record.exc_info = None
        return record

    logging.setLogRecordFactory(factory)
