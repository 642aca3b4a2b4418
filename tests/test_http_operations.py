"""The three request operations of ``core/http.py`` and their one policy: a one-off call
(retried, or sent once with ``idempotent=False``), a body read as it arrives (read again
past what was delivered when it breaks off), a call whose answer a lighter reader checks,
and the ``on_unauthorized`` hook."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import requests_mock as rm
import urllib3
from singer_sdk.authenticators import APIKeyAuthenticator, BearerTokenAuthenticator
from singer_sdk.exceptions import RetriableAPIError

from tap_dataplatforms.core.errors import PartitionError, PlatformAuthError
from tap_dataplatforms.core.http import PlatformStream, response_json
from tap_dataplatforms.core.jsonbody import BrokenBody
from tests.helpers import FakeClock, make_tap

BASE = "https://redivis.test/api/v1"
URL = f"{BASE}/organizations/demo/datasets"


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PlatformStream, "retry_base_seconds", 0.001)


@pytest.fixture
def stream() -> PlatformStream:
    config = {"redivis": {"api_url": BASE, "token": "t-1234567890", "organizations": ["demo"]}}
    found = make_tap(config, clock=FakeClock()).streams["redivis_datasets"]
    assert isinstance(found, PlatformStream)
    return found


BUSY = {"status_code": 503, "json": {"error": {"message": "busy"}}}


def test_a_call_is_retried_and_one_with_a_side_effect_is_sent_once(
    stream: PlatformStream, requests_mock: rm.Mocker
) -> None:
    requests_mock.post(URL, [BUSY, {"json": {"ok": 1}}])
    assert response_json(stream.call("POST", URL, json_body={})) == {"ok": 1}
    assert requests_mock.call_count == 2
    requests_mock.post(URL, [BUSY, {"json": {"ok": 1}}])
    with pytest.raises(RetriableAPIError):
        stream.call("POST", URL, json_body={}, idempotent=False)
    assert requests_mock.call_count == 3  # once: a lost answer is for core.once to look for


def test_retries_bound_the_tries_of_a_call(
    stream: PlatformStream, requests_mock: rm.Mocker
) -> None:
    requests_mock.get(URL, [BUSY, BUSY, {"json": {}}])
    with pytest.raises(RetriableAPIError):
        stream.call("GET", URL, retries=1)
    assert requests_mock.call_count == 2


def test_a_streamed_body_is_left_unread_and_read_again_past_what_was_delivered(
    stream: PlatformStream, requests_mock: rm.Mocker
) -> None:
    requests_mock.get(URL, [BUSY, {"content": b"abc"}, {"content": b"abcdef"}])
    opened: list[requests.Response] = []

    def open_body() -> requests.Response:
        response = stream.stream_body(URL)
        assert not response._content_consumed  # the caller reads it
        opened.append(response)
        return response

    def read(response: requests.Response, skip: int) -> Iterator[str]:
        content = response.content.decode()
        yield from itertools.islice(content, skip, None)
        if len(opened) == 1:
            raise BrokenBody("cut off")

    assert "".join(stream.read_streamed(open_body, read, what="the body")) == "abcdef"
    assert requests_mock.call_count == 3  # a 503 retried, then one body read again


def test_a_body_that_keeps_breaking_off_fails_its_partition(
    stream: PlatformStream, requests_mock: rm.Mocker
) -> None:
    requests_mock.get(URL, content=b"x")

    def read(response: requests.Response, skip: int) -> Iterator[str]:
        raise BrokenBody("Redivis: GET datasets: cut off")
        yield ""

    body = stream.read_streamed(lambda: stream.stream_body(URL), read, what="x", retries=2)
    with pytest.raises(PartitionError, match=r"cut off \(gave up after 3 reads\)"):
        list(body)
    assert requests_mock.call_count == 3


def test_an_answer_its_reader_cannot_read_is_fetched_again(
    stream: PlatformStream, requests_mock: rm.Mocker
) -> None:
    requests_mock.get(URL, [{"content": b'{"a": '}, {"content": b'{"a": 1}'}])
    assert stream.call_read("GET", URL, response_json) == {"a": 1}
    assert requests_mock.call_count == 2


def test_a_renewed_credential_sends_a_refused_request_once_more(
    stream: PlatformStream, requests_mock: rm.Mocker, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = {"status_code": 401, "json": {"error": {"message": "expired"}}}
    requests_mock.get(URL, [refused, {"json": {}}, refused, refused])
    renewals: list[PlatformAuthError] = []

    def renew(prepared: Any, error: PlatformAuthError) -> bool:
        renewals.append(error)
        return True

    monkeypatch.setattr(stream, "on_unauthorized", renew)
    stream.call("GET", URL)
    assert len(renewals) == 1
    with pytest.raises(PlatformAuthError):  # refused again after a renewal: no loop
        stream.call("GET", URL)
    assert len(renewals) == 2
    assert requests_mock.call_count == 4


def test_the_duration_metric_names_the_endpoint_the_stream_says(
    stream: PlatformStream, requests_mock: rm.Mocker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream that calls several routes names each request's own in the metric."""
    named: list[str] = []
    monkeypatch.setattr(
        stream, "log_request_duration", lambda endpoint, *args, **kwargs: named.append(endpoint)
    )
    requests_mock.get(URL, json={})
    stream.call("GET", URL)
    monkeypatch.setattr(stream, "metric_endpoint", lambda response: "/other/{route}")
    stream.call("GET", URL)
    assert named == [stream.path, "/other/{route}"]


def test_a_body_that_resumes_is_opened_again_at_what_was_delivered(
    stream: PlatformStream, requests_mock: rm.Mocker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The opener hears how many rows came (a batch counts its rows); an opening refused
    because what the body is read from expired is renewed by the platform's hook, not
    counted as a break; a break waits out the retry policy's wait and counts as a retry."""
    requests_mock.get(URL, content=b"")
    offsets: list[int] = []
    gone = [PartitionError("Redivis: HTTP 404 on GET readStreams/1", 404)]
    renewals: list[int] = []

    def open_at(delivered: int) -> requests.Response:
        offsets.append(delivered)
        if delivered and gone:
            raise gone.pop()
        return stream.stream_body(URL)

    def renewed(error: PartitionError) -> bool:
        renewals.append(error.status or 0)
        return error.status == 404

    def read(response: requests.Response, offset: int) -> Iterator[list[int]]:
        yield list(range(offset, offset + 3))
        if offset == 0:
            raise BrokenBody("ended without the end-of-stream batch")

    clock = stream.budget.clock
    assert isinstance(clock, FakeClock)
    monkeypatch.setattr(stream, "_retry_wait", lambda attempt, exc: 7.25)
    rows = stream.read_resumed(open_at, read, what="stream 1", size=len, renewed=renewed)
    assert list(rows) == [[0, 1, 2], [3, 4, 5]]
    assert offsets == [0, 3, 3]
    assert renewals == [404]
    assert clock.sleeps.count(7.25) == 1
    assert stream.runtime.counters["redivis.retries"] == 1


def test_pages_follow_the_streams_paginator_until_it_ends_or_the_caller_stops(
    stream: PlatformStream, requests_mock: rm.Mocker
) -> None:
    """A listing read outside the stream's records: each page a call, the stream's own
    paginator (Redivis: ``nextPageToken``) saying where it ends; leaving the loop stops."""
    requests_mock.get(
        URL,
        [
            {"json": {"results": [1], "nextPageToken": "b"}},
            {"json": {"results": [], "nextPageToken": "c"}},  # empty, not the end
            {"json": {"results": [2]}},
        ],
    )

    def params(token: str | None) -> dict[str, Any]:
        return {"pageToken": token} if token else {}

    pages = [response_json(page) for page in stream.pages(URL, params)]
    assert [page["results"] for page in pages] == [[1], [], [2]]
    assert [r.qs.get("pagetoken") for r in requests_mock.request_history] == [None, ["b"], ["c"]]
    requests_mock.get(URL, json={"results": [1], "nextPageToken": "b"})
    for _page in stream.pages(URL, params):
        break
    assert requests_mock.call_count == 4


def test_a_read_body_is_read_in_large_pieces_and_kept(
    stream: PlatformStream, requests_mock: rm.Mocker, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = b'{"a": "' + b"x" * 3_000_000 + b'"}'
    requests_mock.get(URL, content=body)
    reads = itertools.count()
    original = urllib3.HTTPResponse.read

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        next(reads)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(urllib3.HTTPResponse, "read", counted)
    kept: list[bytes] = []

    def reader(response: requests.Response) -> int:
        kept.append(response.content)
        return len(response_json(response)["a"])

    assert stream.call_read("GET", URL, reader) == 3_000_000
    assert kept == [body]
    assert next(reads) < 10  # requests alone reads 10 KB at a time: about 300 reads


def test_proxies_come_from_the_environment_once_per_host(
    stream: PlatformStream, requests_mock: rm.Mocker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "direct.test")
    requests_mock.get(URL, json={})
    requests_mock.get("https://direct.test/x", json={})
    stream.call("GET", URL)
    assert requests_mock.last_request.proxies == {"https": "http://proxy.example:3128"}
    stream.call("GET", "https://direct.test/x")
    assert requests_mock.last_request.proxies == {}
    # what requests itself works out for each, read once per host
    monkeypatch.setenv("HTTPS_PROXY", "http://other.example:3128")
    stream.call("GET", URL)
    assert requests_mock.last_request.proxies == {"https": "http://proxy.example:3128"}
    stream.requests_session.trust_env = False
    stream.__dict__.pop("_proxies")
    stream.call("GET", URL)
    assert requests_mock.last_request.proxies == {}


def test_an_authenticator_that_only_sets_headers_is_applied_directly_and_others_are_called(
    stream: PlatformStream, requests_mock: rm.Mocker, monkeypatch: pytest.MonkeyPatch
) -> None:
    requests_mock.get(URL, json={})
    stream.call("GET", URL, params={"q": "1"})
    sent = requests_mock.last_request
    assert sent.headers["Authorization"] == "Bearer t-1234567890"
    assert sent.url == f"{URL}?q=1"

    class Stamped(BearerTokenAuthenticator):
        def authenticate_request(self, request: Any) -> Any:
            request.headers["X-Stamp"] = "yes"
            return super().authenticate_request(request)

    monkeypatch.setitem(stream.__dict__, "authenticator", Stamped(token="t-2"))
    stream.call("GET", URL)
    assert requests_mock.last_request.headers["X-Stamp"] == "yes"
    assert requests_mock.last_request.headers["Authorization"] == "Bearer t-2"
    keyed = APIKeyAuthenticator(key="api_key", value="k-3", location="params")
    monkeypatch.setitem(stream.__dict__, "authenticator", keyed)
    stream.call("GET", URL)
    assert requests_mock.last_request.qs == {"api_key": ["k-3"]}
