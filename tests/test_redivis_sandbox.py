"""Redivis metadata against the sandbox: completeness, pacing, and every Retry-After form."""

from __future__ import annotations

import email.utils
from collections.abc import Iterator
from typing import Any

import pytest

from dataplatforms_sandbox import Sandbox
from tests.budget_at_server import cpu_burner
from tests.helpers import make_tap, run_sync
from tests.sandbox_env import ROOMY_LIMITS, redivis_config, shared_sandbox


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    sb = Sandbox(seed=7, scale=1, limits=ROOMY_LIMITS).start()
    yield sb
    sb.stop()


def expected(sb: Sandbox, owners: list[str]) -> dict[str, set[Any]]:
    model = sb.redivis
    datasets = [ds for name in owners for ds in model.datasets_by_owner[name]]
    tables = [t for ds in datasets if ds.may("metadata") for t in ds.current_tables]
    return {
        "redivis_datasets": {ds.id for ds in datasets},
        "redivis_tables": {t.qualified_reference for t in tables},
        "redivis_variables": {(t.qualified_reference, v.name) for t in tables for v in t.variables},
    }


def keys(out: Any) -> dict[str, list[Any]]:
    return {
        "redivis_datasets": [r["id"] for r in out.records["redivis_datasets"]],
        "redivis_tables": [r["qualifiedReference"] for r in out.records["redivis_tables"]],
        "redivis_variables": [
            (r["table_reference"], r["name"]) for r in out.records["redivis_variables"]
        ],
    }


@pytest.mark.untimed
def test_full_sync_equals_the_sandbox_by_key() -> None:
    sb = shared_sandbox()
    config = redivis_config(sb, max_requests_per_second=200)
    out = run_sync(make_tap(config))
    got = keys(out)
    want = expected(sb, ["demo", "census_archive", "jdoe"])
    for stream, wanted in want.items():
        assert len(got[stream]) == len(set(got[stream])), f"duplicates in {stream}"
        assert set(got[stream]) == wanted, stream
    # census_archive needs two pages at the default page size.
    assert len(want["redivis_datasets"]) > 100
    dataset = out.records["redivis_datasets"][0]
    assert dataset["createdAt"].endswith("+00:00")


def test_tight_limit_is_never_exceeded(sandbox: Sandbox) -> None:
    sandbox.set_limit("redivis", limit=6, window_seconds=1.5)
    config = redivis_config(sandbox, organizations=["demo"], users=["jdoe"])
    # On a busy machine (every CPU kept busy), as the sandbox sees the requests arrive.
    with cpu_burner():
        out = run_sync(make_tap(config))
    log = sandbox.request_log(platform="redivis")
    assert [e for e in log if e["status"] == 429] == []
    assert len(log) > 12  # several windows' worth of requests were needed
    got = keys(out)
    assert set(got["redivis_variables"]) == expected(sandbox, ["demo", "jdoe"])["redivis_variables"]


def server_wait(entry: dict[str, Any], form: str) -> float:
    """What the 429's headers asked for, read independently of the tap's parser."""
    headers = {k.lower(): v for k, v in entry["headers_sent"].items()}
    sent = entry["time"]
    if form == "seconds":
        return float(headers["retry-after"])
    if form == "http-date":
        return email.utils.parsedate_to_datetime(headers["retry-after"]).timestamp() - sent
    if form == "epoch-s":
        return float(headers["retry-after"]) - sent
    if form == "epoch-ms":
        return float(headers["retry-after"]) / 1000 - sent
    return float(headers["x-ratelimit-reset"]) / 1000 - sent


@pytest.mark.parametrize("form", ["seconds", "http-date", "epoch-s", "epoch-ms", "reset"])
def test_forced_429_waits_what_the_server_asked(sandbox: Sandbox, form: str) -> None:
    config = redivis_config(sandbox, organizations=["demo"], users=[], max_requests_per_second=100)
    sandbox.force(
        "redivis", status=429, count=1, retry_after_form=form, delay=3, path_contains="/tables"
    )
    out = run_sync(make_tap(config))
    log = sandbox.request_log(platform="redivis")
    index = next(i for i, e in enumerate(log) if e["status"] == 429)
    rejected, retried = log[index], log[index + 1]
    asked = server_wait(rejected, form)
    waited = retried["time"] - rejected["time"]
    assert asked > 2.0
    assert asked * 0.9 <= waited <= asked * 1.1 + 0.05, (asked, waited)
    assert retried["path"] == rejected["path"]
    assert len([e for e in log if e["status"] == 429]) == 1
    got = keys(out)
    assert set(got["redivis_variables"]) == expected(sandbox, ["demo"])["redivis_variables"]


@pytest.mark.untimed
def test_flattened_datasets_schema_has_every_column_the_records_carry() -> None:
    config = redivis_config(shared_sandbox(), organizations=["demo"], users=[])
    config.update(flattening_enabled=True, flattening_max_depth=1)
    out = run_sync(make_tap(config))
    declared = set(out.schemas["redivis_datasets"]["properties"])
    carried = {key for record in out.records["redivis_datasets"] for key in record}
    # The documented objects, filled in by the sandbox, become the same columns in the
    # SCHEMA as in the records (fields nobody documented still arrive, unflattened ones
    # too, but these are the ones every dataset with a range, a box or a sample has).
    documented = {
        "temporalRange__min",
        "temporalRange__max",
        "geoBBox__west",
        "geoBBox__south",
        "geoBBox__east",
        "geoBBox__north",
        "sampleConfiguration__type",
        "sampleConfiguration__samplePercentage",
    }
    assert documented <= carried
    assert documented <= declared, sorted(documented - declared)
