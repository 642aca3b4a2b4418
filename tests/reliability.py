"""Shared parts of the reliability tests: one sync setup per platform, record keys, the
nightly switch and the figures file.

Each platform's setup extracts every stream that needs no side effect (Dexi's execute_runs
and InVision's triggered data flows start things on the platform, so they stay off).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from dataplatforms_sandbox import CREDENTIALS, Sandbox

PLATFORM_NAMES = ("dexi", "reinfer", "redivis", "invision", "datalinx")
#: ``TAPDP_NIGHTLY=1`` runs the full counts; CI runs a fast subset.
NIGHTLY = os.environ.get("TAPDP_NIGHTLY", "") not in ("", "0", "false", "no")
#: Where the figures go (one JSON object per line, appended), besides ``pytest -s``.
FIGURES = Path(os.environ.get("TAPDP_FIGURES", "output/reliability-figures.jsonl"))
#: The tap's read timeout in these tests, and how late a ``slow`` fault answers.
READ_TIMEOUT = 1.0
SLOW_SECONDS = 1.3
#: Rate limits roomy enough that only injected faults say 429.
ROOMY = {name: (1_000_000, 60.0) for name in PLATFORM_NAMES if name != "invision"}


@dataclass(frozen=True)
class Setup:
    """How one platform is synced in these tests."""

    platform: str
    block: Callable[[Sandbox, Path], dict[str, Any]]
    start_date: Callable[[], str] | None = None


def _dexi(sb: Sandbox, work: Path) -> dict[str, Any]:
    return {
        **CREDENTIALS["dexi"],
        "api_url": sb.base_url("dexi"),
        "dataset_ids": sorted(sb.dexi.datasets),
        "download_files": True,
        "files_dir": str(work / "dexi-files"),
        "max_requests_per_second": 2000,
    }


def _reinfer(sb: Sandbox, work: Path) -> dict[str, Any]:
    return {
        "api_url": sb.base_url("reinfer"),
        **CREDENTIALS["reinfer"],
        "max_requests_per_second": 2000,
    }


def _redivis(sb: Sandbox, work: Path) -> dict[str, Any]:
    readable = [
        table
        for ds in sb.redivis.datasets_by_owner["demo"]
        if ds.may("data")
        for table in ds.current_tables
    ][:2]
    for table, rows in zip(readable, (2500, 1200), strict=True):
        table.num_rows = rows  # the model serves whatever size it holds; keep it quick
    return {
        "api_url": sb.base_url("redivis"),
        **CREDENTIALS["redivis"],
        "organizations": ["demo"],
        "users": ["jdoe"],
        "tables": [table.qualified_reference for table in readable],
        "max_requests_per_second": 2000,
    }


def _invision(sb: Sandbox, work: Path) -> dict[str, Any]:
    return {
        "api_url": sb.base_url("invision"),
        **CREDENTIALS["invision"],
        "tables": sorted(sb.invision.tables)[:3],
        "max_requests_per_second": 2000,
    }


def _datalinx(sb: Sandbox, work: Path) -> dict[str, Any]:
    creds = CREDENTIALS["datalinx"]
    # A user login, so that JWTs are issued and can expire.
    return {
        "api_url": sb.base_url("datalinx"),
        "email": creds["email"],
        "password": creds["password"],
        "max_requests_per_second": 2000,
    }


def _days_ago(days: int) -> Callable[[], str]:
    def start() -> str:
        moment = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days)
        return moment.replace(microsecond=0).isoformat()

    return start


SETUPS = {
    "dexi": Setup("dexi", _dexi),
    "reinfer": Setup("reinfer", _reinfer, start_date=lambda: "2023-06-01T00:00:00Z"),
    "redivis": Setup("redivis", _redivis),
    # The sandbox's execution log spans about 40 days before its start; one request a day.
    "invision": Setup("invision", _invision, start_date=_days_ago(45)),
    "datalinx": Setup("datalinx", _datalinx),
}


def new_sandbox(seed: int = 3, **kwargs: Any) -> Sandbox:
    return Sandbox(seed=seed, scale=1, limits=ROOMY, **kwargs).start()


def tap_config(sb: Sandbox, platform: str, work: Path, **common: Any) -> dict[str, Any]:
    setup = SETUPS[platform]
    config: dict[str, Any] = {
        platform: setup.block(sb, work),
        "request_timeout_seconds": READ_TIMEOUT,
        **common,
    }
    if setup.start_date is not None:
        config.setdefault("start_date", setup.start_date())
    return config


def record_key(stream: str, record: dict[str, Any], key_properties: list[str]) -> str:
    """A record's identity: its stream and key, or its whole body for keyless streams."""
    if key_properties:
        return json.dumps([stream, *(record.get(k) for k in key_properties)], default=str)
    return json.dumps([stream, record], sort_keys=True, default=str)


def canonical(records: dict[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
    """Every record as sorted JSON, per stream: equal when keys and values are equal."""
    return {
        stream: sorted(json.dumps(r, sort_keys=True, default=str) for r in rows)
        for stream, rows in records.items()
    }


def report(kind: str, **figures: Any) -> None:
    """Print one line of figures (``pytest -s`` / ``-rA`` shows it) and append it to the
    figures file."""
    line = {"test": kind, "nightly": NIGHTLY, **figures}
    print(f"\nFIGURES {json.dumps(line, sort_keys=True)}")
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    with FIGURES.open("a") as handle:
        handle.write(json.dumps(line, sort_keys=True) + "\n")


def secret_forms(values: list[str]) -> set[str]:
    """Each secret as it could leak: raw, URL-encoded, base64 (with and without padding)."""
    forms: set[str] = set()
    for value in values:
        if not value:
            continue
        raw = value.encode()
        b64 = base64.b64encode(raw).decode()
        forms |= {value, quote(value, safe=""), b64, b64.rstrip("=")}
        forms.add(base64.urlsafe_b64encode(raw).decode().rstrip("="))
    return forms


def secret_hits(text: str, values: list[str]) -> list[str]:
    """The forms of ``values`` found in ``text`` (shortened, so a failure leaks nothing)."""
    return sorted(
        f"{form[:4]}...({len(form)} chars)" for form in secret_forms(values) if form in text
    )


def credential_secrets() -> list[str]:
    """Every secret the sandbox accepts, and the Dexi access digest derived from one."""
    values = [
        v
        for platform, creds in CREDENTIALS.items()
        for k, v in creds.items()
        if k not in ("account_id", "email")
    ]
    dexi = CREDENTIALS["dexi"]
    values.append(dexi_digest(dexi["account_id"], dexi["api_key"]))
    return values


def sandbox_secrets(sb: Sandbox) -> list[str]:
    """The credentials, and every Datalinx JWT this sandbox issued (whole and its
    signature part)."""
    values = credential_secrets()
    for token in list(sb.datalinx.tokens):
        values += [token, token.rsplit(".", 1)[-1]]
    return values


def dexi_digest(account: str, key: str) -> str:
    # The documented X-DexiIO-Access value, computed here independently of the tap.
    return hashlib.md5((account + key).encode(), usedforsecurity=False).hexdigest()
