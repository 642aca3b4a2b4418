"""Exceptions whose text is shown to users as one line."""

from __future__ import annotations

from singer_sdk.exceptions import FatalAPIError, RetriableAPIError


class TapDataPlatformsError(Exception):
    """An error the command line reports as one line, without a traceback."""


class ConfigError(TapDataPlatformsError):
    """The configuration is invalid; raised before any request is sent."""


class PlatformAuthError(FatalAPIError, TapDataPlatformsError):
    """The platform refused the credentials (401) or their permissions (403).

    Fatal for the whole sync: every other request would fail the same way.
    """


class PartitionError(FatalAPIError, TapDataPlatformsError):
    """A permanent error on one partition (a deleted or inaccessible resource).

    The partition is skipped, the sync goes on, and the run ends non-zero.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class PlatformUnavailableError(TapDataPlatformsError):
    """The platform could not be reached or kept failing after every retry."""


class RateLimitedError(RetriableAPIError):
    """A 429 that outlasted the time the tap is willing to wait."""


class SyncFailedError(TapDataPlatformsError):
    """Some partitions failed; the summary names each of them."""
