"""A Redis server for tests: the one on 127.0.0.1:6379, started when it is not running.

Without Redis (no server and no ``redis-server`` to start) a test fails under
``CI=true`` and is skipped elsewhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
# Database 0 is what meltano.yml's partitioned extractors use; tests use their own.
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


def missing(message: str) -> None:
    """A missing dependency: a failure in CI, a skip on a developer's machine."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def _answers() -> bool:
    try:
        import redis
    except ImportError:
        return False
    try:
        return bool(redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def ensure_redis() -> str:
    """The URL of a running Redis, starting one (no persistence) if none answers."""
    try:
        import redis  # noqa: F401
    except ImportError:
        missing("the redis client is not installed (pip install -e '.[dev]')")
    if _answers():
        return REDIS_URL
    server = shutil.which("redis-server")
    if server is None:
        missing(f"no Redis on {REDIS_HOST}:{REDIS_PORT} and no redis-server to start")
    data_dir, log_dir = Path("/var/lib/redis"), Path("/var/log/redis")
    for folder in (data_dir, log_dir):
        folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            str(server),
            "--daemonize",
            "yes",
            "--bind",
            REDIS_HOST,
            "-::1",
            "--port",
            str(REDIS_PORT),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(data_dir),
            "--logfile",
            str(log_dir / "ci.log"),
        ],
        check=False,
        capture_output=True,
        timeout=30,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _answers():
            return REDIS_URL
        time.sleep(0.1)
    missing(f"redis-server did not come up on {REDIS_HOST}:{REDIS_PORT}")
    return REDIS_URL
