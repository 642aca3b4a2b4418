"""Calls with a side effect (starting a Dexi run, triggering an InVision data flow),
carried out once.

Such a call is sent a single time, outside the generic backoff. If its answer is lost
after the request may have reached the server (the connection dropped, the answer was
cut or came late, a 5xx or 408), the server may have acted on it: sending it again could
start the work twice. So the caller's ``adopt`` first looks, for a short grace period,
for what the lost request started, and that is adopted as the answer. Only when nothing
appears is the call sent again; when nothing can be looked up, it is not sent again and
the item fails with a message saying so. A request that provably never left (connection
refused, host not found, a connect timeout) or was turned away unprocessed (429) is
simply sent again.

A platform that answers a bad item (an unknown id) with the same 5xx as a passing fault
(InVision: every failure is a 500) asks ``call_once`` with ``resend_after_error=False``:
then a call answered with a whole 5xx, whose lookup finds nothing started, is taken as
refused and not sent again. Only a call whose answer never came (a drop, a cut reply, a
timeout) is sent again, so an unknown id costs one call, not two.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import requests
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError

from tap_dataplatforms.core.errors import PartitionError, PlatformAuthError, RateLimitedError
from tap_dataplatforms.core.http import is_permanent
from tap_dataplatforms.core.redact import redact

if TYPE_CHECKING:
    from tap_dataplatforms.core.http import PlatformStream

T = TypeVar("T")

#: How long ``adopt`` keeps looking for what a lost request started before the call is
#: sent again: long enough for a platform to list what it accepted a moment ago.
GRACE_SECONDS = 10.0
#: First wait between two looks; doubles up to the end of the grace period.
FIRST_LOOK_WAIT = 0.5
#: Times a call whose answer was lost, and which started nothing that shows, is sent
#: again: a platform that answers every failure alike (InVision's 500 for a bad id) is
#: not asked over and over, a grace period each time.
RESENDS_AFTER_LOST = 1
#: Connection failures raised before a byte of the request was sent.
_NOT_CONNECTED = frozenset({"NewConnectionError", "NameResolutionError", "ConnectTimeoutError"})


class LookupFailed(PartitionError):
    """What a lost request may have started cannot be looked up (the item fails)."""


class RefusedError(PartitionError):
    """A call answered with a whole error (5xx) that started nothing: not sent again."""


def error_answer(exc: BaseException) -> int | None:
    """The status of a whole 5xx answer (the server answered, and said it failed)."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) and status >= 500 else None


def never_sent(exc: BaseException) -> bool:
    """Whether the request provably never reached the server (nothing can have started)."""
    if isinstance(exc, RateLimitedError):
        return True  # a 429: turned away before it was carried out
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if not isinstance(exc, requests.exceptions.ConnectionError):
        return False
    cause = exc.args[0] if exc.args else None
    reason = getattr(cause, "reason", cause)
    return type(reason).__name__ in _NOT_CONNECTED


def answer_lost(exc: BaseException) -> bool:
    """Whether a failed call may have been carried out all the same."""
    if never_sent(exc):
        return False
    return isinstance(
        exc, RetriableAPIError | requests.exceptions.RequestException | ConnectionResetError
    )


def call_once(
    stream: PlatformStream,
    send: Callable[[], T],
    adopt: Callable[[], T | None],
    *,
    what: str,
    grace_seconds: float | None = None,
    resend_after_error: bool = True,
) -> T:
    """``send()`` once; after a lost answer, ``adopt()`` what it started, or send again.

    ``send`` makes exactly one request (no retries of its own). ``adopt`` returns what a
    lost ``send`` started, ``None`` while nothing shows, and raises :class:`LookupFailed`
    (or a request error) when it cannot tell. ``what`` names the call in messages.
    ``resend_after_error=False``: a whole 5xx answer after which nothing shows is final.
    """
    clock = stream.budget.clock
    grace = GRACE_SECONDS if grace_seconds is None else grace_seconds
    tries = stream.backoff_max_tries()
    attempt = lost = 0
    while True:
        attempt += 1
        try:
            return send()
        except PlatformAuthError:
            raise
        except (FatalAPIError, RetriableAPIError, requests.exceptions.RequestException) as exc:
            if is_permanent(exc) or (not answer_lost(exc) and not never_sent(exc)):
                raise  # a definite refusal (404, 400, a certificate): nothing started
            reason = redact(str(exc) or type(exc).__name__)
            if never_sent(exc):
                if attempt >= tries:
                    raise
                stream.logger.warning("%s did not reach the server (%s); sent again", what, reason)
                clock.sleep(stream._expo_wait(attempt))
                continue
            stream.logger.warning(
                "%s: the answer was lost (%s); looking for what it may have started", what, reason
            )
            found = _look(stream, adopt, what=what, grace_seconds=grace)
            if found is not None:
                stream.logger.warning("%s: adopted what the lost request started", what)
                return found
            lost += 1
            answered = error_answer(exc)
            if not resend_after_error and answered:
                raise RefusedError(
                    f"{what}: answered {answered} and nothing it started shows "
                    f"within {grace:.0f}s; not sent again ({reason})",
                    answered,
                ) from None
            if attempt >= tries or lost > RESENDS_AFTER_LOST:
                raise
            stream.logger.warning(
                "%s: nothing started within %.0fs of the lost request; sending it again",
                what,
                grace,
            )


def _look(
    stream: PlatformStream, adopt: Callable[[], T | None], *, what: str, grace_seconds: float
) -> T | None:
    clock = stream.budget.clock
    deadline = clock.monotonic() + grace_seconds
    wait = FIRST_LOOK_WAIT
    while True:
        try:
            found = adopt()
        except PlatformAuthError:
            raise
        except (
            LookupFailed,
            FatalAPIError,
            RetriableAPIError,
            requests.exceptions.RequestException,
        ) as exc:
            raise PartitionError(
                f"{what}: the answer was lost and whether it started cannot be looked up "
                f"({redact(str(exc) or type(exc).__name__)}); not sent again, so that it "
                "does not happen twice"
            ) from None
        if found is not None:
            return found
        left = deadline - clock.monotonic()
        if left <= 0:
            return None
        clock.sleep(min(wait, left))
        wait *= 2
