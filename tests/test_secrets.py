"""No secret leaves the tap: every platform, through faults and with failing credentials.

Each run is the real command line at DEBUG level against the sandbox with 10% faults; its
stdout (records and STATE), stderr (every log line and error) and the state file are
scanned for every secret and derived value (the Dexi access digest, the JWTs the sandbox
issued) in raw, URL-encoded and base64 forms. Also: TLS verification is on by default and
``verify_tls: false`` turns it off with one warning.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dataplatforms_sandbox import Sandbox
from tests.reliability import (
    NIGHTLY,
    PLATFORM_NAMES,
    ROOMY,
    new_sandbox,
    report,
    sandbox_secrets,
    secret_hits,
    tap_config,
)

TAP = str(Path(sys.executable).parent / "tap-dataplatforms")
WRONG = "wrong-secret-7f3a91c2"
# Each platform's credentials replaced by wrong ones (Datalinx: a wrong password, then a
# wrong key with the login dropped).
FAILING: dict[str, dict[str, Any]] = {
    "dexi": {"api_key": WRONG},
    "reinfer": {"token": WRONG},
    "redivis": {"token": WRONG},
    "invision": {"api_key": WRONG},
    "datalinx": {"password": WRONG},
    "datalinx-key": {"api_key": WRONG, "email": None, "password": None},
}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    sb = new_sandbox(seed=6)
    yield sb
    sb.stop()


def run_tap(config: dict[str, Any], work: Path, **env: str) -> subprocess.CompletedProcess[str]:
    path = work / "config.json"
    path.write_text(json.dumps(config))
    return subprocess.run(
        [TAP, "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "LOGLEVEL": "DEBUG", **env},
    )


def last_state(stdout: str) -> dict[str, Any] | None:
    states = [json.loads(line)["value"] for line in stdout.splitlines() if '"STATE"' in line]
    return states[-1] if states else None


def assert_no_secrets(
    sb: Sandbox, result: subprocess.CompletedProcess[str], work: Path, **figures: Any
) -> None:
    """No secret in anything the run left: output, log lines, its final state file."""
    state_file = work / "state.json"
    state_file.write_text(json.dumps(last_state(result.stdout)))
    text = result.stdout + result.stderr + state_file.read_text()
    hits = secret_hits(text, [*sandbox_secrets(sb), WRONG])
    assert hits == []
    report("secrets", scanned_chars=len(text), secret_hits=len(hits), **figures)


@pytest.mark.parametrize("platform", PLATFORM_NAMES)
def test_no_secret_in_output_logs_or_state(sandbox: Sandbox, platform: str, tmp_path: Path) -> None:
    # Dexi's setup makes ~450 requests, and each fault costs a full backoff in a real run;
    # InVision's sync makes about 50, too few for 10% to be sure of meeting a fault.
    rate = {"dexi": 0.10 if NIGHTLY else 0.03, "invision": 0.25}.get(platform, 0.10)
    sandbox.set_faults(rate, seed=11, slow_seconds=1.3)
    sandbox.clear_log()
    result = run_tap(tap_config(sandbox, platform, tmp_path), tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert '"RECORD"' in result.stdout
    # The run did meet faults and present its credentials, so there was something to leak.
    assert sandbox.fault_counts().get(platform)
    assert any(e.get("credential_ok") for e in sandbox.request_log(platform))
    assert_no_secrets(
        sandbox, result, tmp_path, platform=platform, faults=sandbox.fault_counts()[platform]
    )


@pytest.mark.parametrize("case", sorted(FAILING))
def test_failing_credentials_fail_in_one_line_without_the_secret(
    sandbox: Sandbox, case: str, tmp_path: Path
) -> None:
    platform = case.split("-")[0]
    sandbox.set_faults(0.10, seed=12, slow_seconds=1.3)
    sandbox.clear_log()
    config = tap_config(sandbox, platform, tmp_path)
    config[platform].update(FAILING[case])
    config[platform] = {k: v for k, v in config[platform].items() if v is not None}
    result = run_tap(config, tmp_path)
    assert result.returncode in (2, 3)  # credentials refused, or unusable
    assert '"RECORD"' not in result.stdout
    errors = [line for line in result.stderr.splitlines() if "| ERROR" in line]
    assert len(errors) == 1, errors
    assert "Traceback" not in result.stderr
    # The wrong credential was sent (and refused), so it could have leaked.
    assert any(e.get("credential_ok") is False for e in sandbox.request_log(platform))
    assert_no_secrets(sandbox, result, tmp_path, platform=case, error=errors[0][-100:])


# -- TLS --------------------------------------------------------------------------------


OPENSSL_SELF_SIGNED = ("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2")
OPENSSL_SELF_SIGNED += ("-subj", "/CN=127.0.0.1")


@pytest.fixture(scope="module")
def tls_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """The sandbox over HTTPS with a self-signed certificate."""
    work = tmp_path_factory.mktemp("tls")
    cert, key = work / "cert.pem", work / "key.pem"
    subprocess.run(
        [*OPENSSL_SELF_SIGNED, "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    sb = Sandbox(seed=6, scale=1, limits=ROOMY).start(tls=context)
    yield sb
    sb.stop()


def test_tls_is_verified_by_default(tls_sandbox: Sandbox, tmp_path: Path) -> None:
    assert tls_sandbox.url.startswith("https://")
    started = time.monotonic()
    result = run_tap(tap_config(tls_sandbox, "redivis", tmp_path), tmp_path, LOGLEVEL="INFO")
    # A certificate that fails verification fails every retry alike: no backoff for it.
    assert time.monotonic() - started < 20
    assert "retry" not in result.stderr
    assert result.returncode == 3  # the platform cannot be reached
    assert result.stdout == ""
    (line,) = [line for line in result.stderr.splitlines() if "| ERROR" in line]
    assert line.endswith("TLS certificate verification failed")
    assert "Traceback" not in result.stderr


def test_verify_tls_false_reads_the_self_signed_host_and_warns_once(
    tls_sandbox: Sandbox, tmp_path: Path
) -> None:
    config = {**tap_config(tls_sandbox, "redivis", tmp_path), "verify_tls": False}
    result = run_tap(config, tmp_path, LOGLEVEL="INFO")
    assert result.returncode == 0, result.stderr[-2000:]
    assert '"RECORD"' in result.stdout
    warnings = [line for line in result.stderr.splitlines() if "verify_tls is false" in line]
    assert len(warnings) == 1
    assert "InsecureRequestWarning" not in result.stderr
