"""The Dagster job of orchestration/dagster_defs.py, run for real against the sandbox.

``dagster job execute`` (from ``.venv-dagster``) starts the four partitioned Meltano
pipelines of meltano.yml at once (``meltano run partition-<i>-to-postgres``, each its own
process, the tap's budgets shared through Redis on 127.0.0.1:6379/0) into a PostgreSQL
database of the test's own. The check reads the loaded tables: the union of the four
partitions' schemas equals the sandbox's data key by key, with no key loaded twice, and
each partition has a Meltano state of its own.

Dagster, Meltano, PostgreSQL or Redis missing: a failure under ``CI=true``, a skip
elsewhere (the PostgreSQL fixtures are those of tests/test_e2e_postgres.py).
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest

from dataplatforms_sandbox import Sandbox
from tap_dataplatforms.core.budget import KEY_PREFIX
from tests.redis_env import REDIS_URL, ensure_redis, missing
from tests.test_e2e_postgres import (
    ROOMY,
    Loaded,
    assert_equals_sandbox,
    database,
    demo,
    ensure_plugins,
    loaded,
    meltano_env,
    server,
    sql,
)

pytestmark = pytest.mark.e2e

__all__ = ["database", "server"]  # fixtures, used by name

ROOT = Path(__file__).resolve().parent.parent
DAGSTER = ROOT / ".venv-dagster" / "bin" / "dagster"
DEFINITIONS = ROOT / "orchestration" / "dagster_defs.py"
JOB = "partitions_to_postgres"
PARTITIONS = 4
LOADER = "target-postgres--partitions"
TIMEOUT = 600.0


def union(parts: list[Loaded]) -> Loaded:
    keys: dict[str, list[tuple[str, ...]]] = {}
    for part in parts:
        for table, rows in part.keys.items():
            keys.setdefault(table, []).extend(rows)
    return Loaded(keys, {})


def test_dagster_runs_the_partitions_at_once_and_they_load_the_whole_sandbox(
    database: str, tmp_path: Path
) -> None:
    if not DAGSTER.exists():
        missing(f"Dagster is not installed at {DAGSTER.relative_to(ROOT)} (run `make dagster`)")
    ensure_redis()
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{KEY_PREFIX}:*"):
        client.delete(key)

    sb = Sandbox(seed=3, scale=1, limits=ROOMY).start()
    sb.datalinx.burst = (1_000_000, 1_000_000.0)
    try:
        env = meltano_env(sb, database, tmp_path)
        # Each partition's loader takes its schema from its extractor (load_schema).
        env.pop("TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA", None)
        log = tmp_path / "dagster.log"
        ensure_plugins(env, log)
        env.update(
            {"DAGSTER_HOME": str(tmp_path / "dagster"), "MELTANO_EXECUTABLE": str(demo.MELTANO)}
        )
        (tmp_path / "dagster").mkdir()
        # Paced budgets live in Redis hashes that expire a moment after the last request,
        # so the keys are watched while the partitions run rather than read afterwards.
        seen: set[str] = set()
        done = threading.Event()

        def watch() -> None:
            while not done.wait(0.05):
                seen.update(k.decode() for k in client.scan_iter(f"{KEY_PREFIX}:budget:*"))

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        started = time.time()
        result = subprocess.run(
            [str(DAGSTER), "job", "execute", "-f", str(DEFINITIONS), "-j", JOB],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        ended = time.time()
        done.set()
        watcher.join()
        log.write_text(result.stdout + result.stderr)
        assert result.returncode == 0, f"dagster failed\n{(result.stdout + result.stderr)[-6000:]}"

        parts = [loaded(database, schema=f"tap_dataplatforms_p{i}") for i in range(PARTITIONS)]
        assert all(p.keys for p in parts), [sorted(p.keys) for p in parts]
        # No per-object streams here: the partitions are compared on every listed stream.
        assert_equals_sandbox(sb, union(parts), started, ended, object_rows=False)

        (states,) = sql(database, "select state_id from state order by state_id")
        assert [s for (s,) in states] == [
            f"e2e:tap-dataplatforms--p{i}-to-{LOADER}" for i in range(PARTITIONS)
        ]
        # The four ran side by side: each started before any of them ended (Meltano's
        # own record of its runs).
        (runs,) = sql(
            database,
            "select state, extract(epoch from started_at), extract(epoch from ended_at) from runs",
        )
        assert [state for state, _, _ in runs] == ["SUCCESS"] * PARTITIONS, runs
        assert max(float(s) for _, s, _ in runs) < min(float(e) for _, _, e in runs), runs
        # The budgets lived in Redis (named by platform and a credential fingerprint).
        assert seen
    finally:
        sb.stop()
