"""Exceptions whose text is shown to users as one line."""

from __future__ import annotations

from singer_sdk.exceptions import FatalAPIError, RetriableAPIError

# Exit statuses, documented for schedulers in the README ("Exit codes").
EXIT_OK = 0
#: An unexpected error inside the tap (a bug): a traceback is logged.
EXIT_INTERNAL = 1
#: The configuration or a platform's credentials are wrong: retrying will not help.
EXIT_CONFIG = 2
#: Some platforms, streams or partitions failed; everything else was written with its state.
EXIT_PARTIAL = 3


class TapDataPlatformsError(Exception):
    """An error the command line reports as one line, without a traceback."""

    exit_code = EXIT_PARTIAL


class ConfigError(TapDataPlatformsError):
    """The configuration is invalid; raised before any request is sent."""

    exit_code = EXIT_CONFIG


class PlatformAuthError(FatalAPIError, TapDataPlatformsError):
    """The platform refused the credentials (401) or their permissions (403).

    Fatal for the platform: every other request to it would fail the same way.
    """

    exit_code = EXIT_CONFIG


class PartitionError(FatalAPIError, TapDataPlatformsError):
    """A permanent error on one partition (a deleted or inaccessible resource).

    The partition is skipped, the sync goes on, and the run ends non-zero.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RouteMissingError(PartitionError):
    """The platform does not serve the route at all (an instance or tenant without it):
    the stream is skipped with one warning instead of failing every partition."""


class PlatformUnavailableError(TapDataPlatformsError):
    """The platform could not be reached or kept failing after every retry."""


class RateLimitedError(RetriableAPIError):
    """A 429 that outlasted the time the tap is willing to wait."""


class SyncFailedError(TapDataPlatformsError):
    """Some partitions failed; the summary names each of them."""

    def __init__(self, message: str, exit_code: int = EXIT_PARTIAL) -> None:
        super().__init__(message)
        self.exit_code = exit_code
