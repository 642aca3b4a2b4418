"""Valid JSON of the wrong shape is an error naming the platform, the endpoint and what was
found, never 0 records and success; no JSON at all (an HTML page or an empty body with
status 200) is read again, and fails the same way if it stays."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from dataplatforms_sandbox import Sandbox
from tap_dataplatforms.core.errors import SyncFailedError
from tap_dataplatforms.core.http import PlatformStream
from tests.helpers import make_tap, run_sync
from tests.reliability import canonical, new_sandbox, tap_config


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PlatformStream, "retry_base_seconds", 0.01)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    sb = new_sandbox(seed=3)
    yield sb
    sb.stop()


# (platform, a list route's path, the member its answer documents, what the tap calls it)
LISTS = [
    ("redivis", "/users/jdoe/datasets", "results", "Redivis: GET "),
    ("datalinx", "/workspaces", "data", "Datalinx: GET "),
    ("reinfer", "/api/v1/sources", "sources", "Re:infer: GET "),
    ("dexi", "/runs/", "rows", "Dexi: GET "),  # a run's executions
]


def sync(sb: Sandbox, platform: str, work: Path):  # type: ignore[no-untyped-def]
    return run_sync(make_tap(tap_config(sb, platform, work)))


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory for every comparable sync (Dexi's file records carry their path)."""
    return tmp_path_factory.mktemp("syncs")


_CLEAN: dict[tuple[int, str], dict[str, list[str]]] = {}


def clean_records(sb: Sandbox, platform: str, work: Path) -> dict[str, list[str]]:
    """The records of a sync without any wrong shape (read once per platform)."""
    if (id(sb), platform) not in _CLEAN:
        sb.set_glitches(False)
        try:
            _CLEAN[id(sb), platform] = canonical(sync(sb, platform, work).records)
        finally:
            sb.set_glitches(True)  # the default, its count from zero
    return _CLEAN[id(sb), platform]


@pytest.mark.parametrize("shape", ["bare-list", "no-member"])
@pytest.mark.parametrize(("platform", "path", "member", "title"), LISTS)
def test_a_list_answer_of_the_wrong_shape_fails_naming_it(
    sandbox: Sandbox,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    platform: str,
    path: str,
    member: str,
    title: str,
    shape: str,
) -> None:
    caplog.set_level(logging.ERROR)
    sandbox.clear_forced()
    tap = make_tap(tap_config(sandbox, platform, tmp_path))  # discovery reads it whole
    sandbox.force_shape(platform, shape, count=1000, path_contains=path)
    try:
        with pytest.raises(SyncFailedError) as info:
            run_sync(tap)
    finally:
        sandbox.clear_forced()
    message = str(info.value)
    assert title in message
    assert path.rstrip("/") in message
    found = "found a JSON array" if shape == "bare-list" else "found an object without it"
    assert f"expected a JSON object with '{member}'" in message
    assert found in message
    assert any(e.get("shape") == shape for e in sandbox.request_log(platform))


@pytest.mark.parametrize("shape", ["html", "empty"])
@pytest.mark.parametrize("platform", ["redivis", "dexi"])
def test_an_html_page_or_empty_body_once_is_read_again(
    sandbox: Sandbox, work: Path, caplog: pytest.LogCaptureFixture, platform: str, shape: str
) -> None:
    caplog.set_level(logging.ERROR)
    clean = clean_records(sandbox, platform, work)
    path = {"redivis": "/datasets", "dexi": "/result"}[platform]
    sandbox.force_shape(platform, shape, count=1, path_contains=path)
    again = sync(sandbox, platform, work)
    assert canonical(again.records) == clean
    assert any(e.get("shape") == shape for e in sandbox.request_log(platform))


def test_an_html_page_that_stays_fails_naming_it(
    sandbox: Sandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    sandbox.force_shape("redivis", "html", count=50, path_contains="/users/jdoe/datasets")
    try:
        with pytest.raises(SyncFailedError) as info:
            sync(sandbox, "redivis", tmp_path)
    finally:
        sandbox.clear_forced()
    assert "Redivis: GET " in str(info.value)
    assert "/users/jdoe/datasets" in str(info.value)
    assert "unreadable JSON body (an HTML page)" in str(info.value)


@pytest.mark.parametrize("platform", ["dexi", "reinfer", "redivis", "invision", "datalinx"])
def test_the_default_sandboxs_passing_html_and_empty_answers_are_read_again(
    sandbox: Sandbox, work: Path, caplog: pytest.LogCaptureFixture, platform: str
) -> None:
    """By default one read endpoint per platform answers now and then with an HTML page
    or an empty body (status 200), once: the records equal those of a sync without."""
    caplog.set_level(logging.ERROR)
    clean = clean_records(sandbox, platform, work)
    sandbox.set_glitches(True)  # the default, its count from zero
    sandbox.clear_log()
    glitched = sync(sandbox, platform, work)
    assert canonical(glitched.records) == clean
    shapes = [e["shape"] for e in sandbox.request_log(platform) if e.get("glitch")]
    # Each platform's first spoiled answer: HTML for some, an empty body for the others.
    first = "html" if platform in ("dexi", "reinfer", "datalinx") else "empty"
    assert shapes[:1] == [first], shapes
