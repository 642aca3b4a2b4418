"""The rule for calls with a side effect (core/once.py): sent once; after a lost answer,
what it started is adopted; sent again only when nothing shows, or when it never left."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
import requests
import urllib3
from singer_sdk.exceptions import RetriableAPIError

from tap_dataplatforms.core.errors import PartitionError, RateLimitedError
from tap_dataplatforms.core.once import LookupFailed, answer_lost, call_once, never_sent
from tests.helpers import FakeClock


def refused() -> requests.exceptions.ConnectionError:
    reason = urllib3.exceptions.NewConnectionError(None, "Connection refused")  # type: ignore[arg-type]
    return requests.exceptions.ConnectionError(
        urllib3.exceptions.MaxRetryError(None, "/execute", reason)  # type: ignore[arg-type]
    )


class Budget:
    def __init__(self) -> None:
        self.clock = FakeClock()


class Stream:
    """What ``call_once`` uses of a stream: its budget's clock, its tries, its log."""

    def __init__(self, tries: int = 4) -> None:
        self.budget = Budget()
        self.tries = tries
        self.logger = logging.getLogger("test-once")

    def backoff_max_tries(self) -> int:
        return self.tries

    def _expo_wait(self, attempt: int) -> float:
        return 1.0


class Calls:
    """A scripted ``send`` and ``adopt``: each step raises an exception or returns."""

    def __init__(self, sends: list[Any], looks: list[Any]) -> None:
        self.sends, self.looks = list(sends), list(looks)
        self.sent = self.looked = 0

    def _step(self, script: list[Any]) -> Any:
        step = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(step, BaseException):
            raise step
        return step

    def send(self) -> Any:
        self.sent += 1
        return self._step(self.sends)

    def adopt(self) -> Any:
        self.looked += 1
        return self._step(self.looks)


def run(calls: Calls, stream: Stream | None = None) -> Any:
    target: Any = stream or Stream()
    send: Callable[[], Any] = calls.send
    return call_once(target, send, calls.adopt, what="starting run r1")


@pytest.mark.parametrize(
    ("exc", "sent", "lost"),
    [
        (refused(), False, False),
        (requests.exceptions.ConnectTimeout("connect timed out"), False, False),
        (RateLimitedError("HTTP 429"), False, False),
        (requests.exceptions.ConnectionError("Connection aborted"), True, True),
        (requests.exceptions.ReadTimeout("read timed out"), True, True),
        (requests.exceptions.ChunkedEncodingError("Response ended prematurely"), True, True),
        (RetriableAPIError("HTTP 502"), True, True),
        (PartitionError("HTTP 404", 404), True, False),
    ],
)
def test_which_failures_may_have_started_something(
    exc: BaseException, sent: bool, lost: bool
) -> None:
    assert never_sent(exc) is not sent
    assert answer_lost(exc) is lost


def test_a_lost_answer_is_adopted_without_sending_again() -> None:
    calls = Calls([requests.exceptions.ReadTimeout("read timed out")], [None, None, "ex-9"])
    stream = Stream()
    assert run(calls, stream) == "ex-9"
    assert (calls.sent, calls.looked) == (1, 3)
    assert stream.budget.clock.sleeps == [0.5, 1.0]  # looks spaced out, growing


def test_when_nothing_shows_it_is_sent_once_more_then_the_error_stands() -> None:
    calls = Calls([RetriableAPIError("HTTP 500")], [None])
    stream = Stream(tries=10)
    with pytest.raises(RetriableAPIError, match="HTTP 500"):
        run(calls, stream)
    assert calls.sent == 2
    assert sum(stream.budget.clock.sleeps) == pytest.approx(2 * 10.0)  # two grace periods


def test_a_start_that_never_left_is_sent_again_without_looking() -> None:
    calls = Calls([refused(), refused(), "ex-3"], [AssertionError("not looked up")])
    assert run(calls) == "ex-3"
    assert (calls.sent, calls.looked) == (3, 0)


@pytest.mark.parametrize(
    "refusal",
    [
        PartitionError("Dexi: HTTP 404: Run not found", 404),
        requests.exceptions.SSLError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"),
    ],
)
def test_a_refused_call_is_not_retried(refusal: Exception) -> None:
    calls = Calls([refusal], [None])
    with pytest.raises(type(refusal)):
        run(calls)
    assert (calls.sent, calls.looked) == (1, 0)


@pytest.mark.parametrize(
    "failure",
    [
        LookupFailed("the listing holds no rows"),
        RetriableAPIError("HTTP 500 on GET runs/r1/executions"),
        requests.exceptions.ConnectionError("Connection aborted"),
    ],
)
def test_when_nothing_can_be_looked_up_it_is_not_sent_again(failure: Exception) -> None:
    calls = Calls([requests.exceptions.ChunkedEncodingError("cut")], [failure])
    with pytest.raises(PartitionError) as caught:
        run(calls)
    assert calls.sent == 1
    message = str(caught.value)
    assert message.startswith("starting run r1: the answer was lost")
    assert "cannot be looked up" in message
    assert "not sent again" in message


def server_error(status: int = 500) -> RetriableAPIError:
    response = requests.Response()
    response.status_code = status
    return RetriableAPIError(f"HTTP {status}", response)


def test_a_whole_5xx_answer_that_started_nothing_is_final_when_the_platform_says_so() -> None:
    # InVision answers an unknown id with the 500 of any failure: not sent again.
    calls = Calls([server_error()], [None])
    with pytest.raises(PartitionError, match="answered 500 and nothing it started shows"):
        call_once(Stream(), calls.send, calls.adopt, what="start", resend_after_error=False)
    assert calls.sent == 1
    assert calls.looked >= 1  # it may have started all the same: looked for first
    # Without an answer at all, nothing is said about the item: sent once more.
    dropped = requests.exceptions.ConnectionError("Connection aborted")
    calls = Calls([dropped, "run-1"], [None])
    assert call_once(Stream(), calls.send, calls.adopt, what="s", resend_after_error=False) == (
        "run-1"
    )
    assert calls.sent == 2
    # By default (Dexi) a 5xx that started nothing is sent once more.
    calls = Calls([server_error(502), "run-1"], [None])
    assert call_once(Stream(), calls.send, calls.adopt, what="start") == "run-1"
    assert calls.sent == 2
