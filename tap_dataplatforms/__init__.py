"""tap-dataplatforms: a Singer tap for five data-platform APIs."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tap-dataplatforms")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without metadata
    __version__ = "0.0.0"
