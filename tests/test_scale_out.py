"""Scaling out: n partitioned processes extract what one would, inside one shared budget.

- Partitions: the union of four partitioned syncs of all five platforms equals one full
  sync, for every stream of the catalog (Dexi files and dataset rows included), key by
  key and record by record, with no key in two partitions; what has no parent comes from
  partition 0 alone.
- Shared budgets: four tap processes with one Dexi credential and a ``redis://`` (or
  ``sqlite:///``) ``rate_limit_backend`` against a sandbox limit of L requests a second
  get no 429 and never send more than L in any second (read from the sandbox's request
  log); with the ``memory`` backend the same four processes do exceed it.

Redis on 127.0.0.1:6379 is started when it is not running (``redis-server``); without it
the redis test fails under ``CI=true`` and is skipped elsewhere.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from dataplatforms_sandbox import Sandbox
from tap_dataplatforms.core.budget import KEY_PREFIX, BudgetRegistry, rates_per_second
from tap_dataplatforms.core.errors import ConfigError
from tap_dataplatforms.core.partition import in_partition, partition_of
from tap_dataplatforms.core.settings import Partition
from tap_dataplatforms.dexi import client as dexi_client
from tests.budget_at_server import cpu_burner
from tests.helpers import make_tap, run_sync
from tests.redis_env import ensure_redis
from tests.sandbox_env import all_platforms
from tests.shared_budget import Outcome, run_processes

PARTITIONS = 4
# The sandbox's Dexi limit in these tests: requests per second, per credential.
LIMIT = 40
ROOMY = {name: (1_000_000, 60.0) for name in ("redivis", "dexi", "reinfer", "datalinx")}
# InVision's log is read a day per request: from a fixed instant shortly before its data
# (the sandbox's last 45 days), the same for every sync of the module.
INVISION_START = (dt.datetime.now(dt.UTC) - dt.timedelta(days=60)).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- partitions


def keyed(tap: Any, records: Mapping[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
    """Each stream's records as their keys (the whole record for a stream without one).

    A triggered InVision run gets a new id each time: its data flow is what a partition
    owns, so that is its key here."""
    out: dict[str, list[str]] = {}
    for name, rows in records.items():
        keys = list(tap.streams[name].primary_keys or [])
        if name == "invision_dataflow_runs":
            keys = ["dataflow_id"]
        out[name] = [
            json.dumps([r.get(k) for k in keys] if keys else r, sort_keys=True, default=str)
            for r in rows
        ]
    return out


#: Fields that differ between two syncs of the same data: where a file was written (each
#: sync has its own directory).
VOLATILE = {"dexi_files": ("path",)}


def whole(records: Mapping[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
    """Each stream's records, whole, as sorted JSON (volatile fields left out)."""
    return {
        name: [
            json.dumps(
                {k: v for k, v in r.items() if k not in VOLATILE.get(name, ())},
                sort_keys=True,
                default=str,
            )
            for r in rows
        ]
        for name, rows in records.items()
    }


@pytest.fixture(scope="module")
def partition_sandbox() -> Iterator[Sandbox]:
    sb = Sandbox(seed=7, scale=1, limits=ROOMY).start()
    sb.datalinx.burst = (1_000_000, 1_000_000.0)
    yield sb
    sb.stop()


@pytest.mark.untimed
def test_each_parent_hashes_to_exactly_one_partition() -> None:
    keys = [f"parent-{i}" for i in range(400)]
    for count in (1, 2, 4, 7):
        owners = [[i for i in range(count) if in_partition(Partition(i, count), k)] for k in keys]
        assert all(len(o) == 1 for o in owners)
        # Stable: the same owner every time, and not all in one place.
        assert [o[0] for o in owners] == [partition_of(k, count) for k in keys]
        assert len({o[0] for o in owners}) == count
    assert in_partition(None, "anything")


#: Streams with no parent to split by: under ``partition`` only index 0 reads them.
WHOLE_ACCOUNT_STREAMS = frozenset(
    {
        "reinfer_projects",
        "invision_execution_log",
        "datalinx_users",
        "datalinx_roles",
        "datalinx_service_accounts",
    }
)


@pytest.mark.untimed
def test_four_partitions_together_equal_one_full_sync(
    partition_sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sb = partition_sandbox
    # Files and dataset rows spend Dexi's write budget (15 a second): a roomier one, on
    # both sides, keeps the five syncs short.
    monkeypatch.setattr(dexi_client, "WRITE_RATE_PER_SECOND", 500.0)
    sb.platform("dexi").set_write_limit(1_000_000)  # type: ignore[attr-defined]
    catalogs: list[set[str]] = []
    contents: list[dict[str, list[str]]] = []

    def sync(partition: dict[str, int] | None) -> dict[str, list[str]]:
        config = all_platforms(sb, tmp_path / str(partition))
        if partition:
            config["partition"] = partition
        # Two runs of one process's share: InVision from its own start (see above).
        invision = {"start_date": INVISION_START, "invision": config.pop("invision")}
        if partition:
            invision["partition"] = partition
        records: dict[str, list[str]] = {}
        content: dict[str, list[str]] = {}
        streams: set[str] = set()
        for part in (config, invision):
            tap = make_tap(part)
            streams |= set(tap.streams)
            out = run_sync(tap).records
            records.update(keyed(tap, out))
            content.update(whole(out))
        catalogs.append(streams)
        contents.append(content)
        return records

    full = sync(None)
    parts = [sync({"index": i, "count": PARTITIONS}) for i in range(PARTITIONS)]

    # Every stream of the full catalog was read, but for those the sandbox leaves empty
    # (a run never executed, a table of 0 rows) and the triggered runs (tested below).
    empty = {
        "invision_dataflow_runs",
        "dexi_results__never_executed",
        *(
            "redivis_rows__" + t.name
            for ds in sb.redivis.datasets_by_owner["demo"]
            for t in ds.current_tables
            if not t.num_rows
        ),
    }
    assert catalogs[0] - set(full) <= empty, sorted(catalogs[0] - set(full) - empty)
    assert {n.split("__")[0] for n in full if "__" in n} == {
        "dexi_results",
        "dexi_dataset_rows",
        "redivis_rows",
        "invision_table",
    }
    assert "dexi_files" in full
    # A partition announces no stream the full sync lacks.
    assert all(c <= catalogs[0] for c in catalogs[1:])
    # Every incremental stream was read whole, and the log only by partition 0.
    for name in ("dexi_executions", "reinfer_comments", "datalinx_sources"):
        assert len(full[name]) > 10, name
    assert len(full["invision_execution_log"]) > 100
    # What has no parent is emitted by partition 0 alone.
    for name in sorted(WHOLE_ACCOUNT_STREAMS):
        assert full.get(name), name
        assert [bool(p.get(name)) for p in parts] == [True, False, False, False], name
    # Every platform, and the parents of each, really are split.
    assert {name.split("_", 1)[0] for name in full} == {
        "redivis",
        "dexi",
        "reinfer",
        "invision",
        "datalinx",
    }
    for name in (
        "dexi_runs",
        "dexi_files",
        "reinfer_comments",
        "datalinx_sources",
        "redivis_tables",
        "reinfer_sources",
    ):
        assert sum(1 for p in parts if p.get(name)) > 1, name
    # A stream per object (a dataset's rows, a table's data) comes from one partition.
    for name in full:
        if "__" in name:
            assert sum(1 for p in parts if p.get(name)) == 1, name

    streams = set(full) | {name for p in parts for name in p}
    for name in sorted(streams):
        union = [key for p in parts for key in p.get(name, [])]
        want = Counter(full.get(name, []))
        dupes = [k for k, n in Counter(union).items() if n > want[k]]
        assert not dupes, f"{name}: {len(dupes)} keys in more than one partition: {dupes[:3]}"
        assert Counter(union) == want, (
            f"{name}: partitions {len(union)} records, full sync {sum(want.values())}; "
            f"missing {sorted(set(want) - set(union))[:3]}, "
            f"extra {sorted(set(union) - set(want))[:3]}"
        )
        # And the records themselves, field by field, are those of the full sync.
        union_records = Counter(r for c in contents[1:] for r in c.get(name, []))
        full_records = Counter(contents[0].get(name, []))
        assert union_records == full_records, (
            f"{name}: records differ; only in the full sync "
            f"{sorted(full_records - union_records)[:1]}, only in partitions "
            f"{sorted(union_records - full_records)[:1]}"
        )


@pytest.mark.untimed
def test_each_data_flow_is_triggered_by_one_partition(
    partition_sandbox: Sandbox, tmp_path: Path
) -> None:
    sb = partition_sandbox
    flows = sorted(f.id for f in sb.invision.succeeding)
    triggered: list[str] = []
    for index in range(PARTITIONS):
        config = all_platforms(sb, tmp_path, trigger=True)
        tap = make_tap(
            {
                "invision": config["invision"],
                "partition": {"index": index, "count": PARTITIONS},
            }
        )
        for stream in tap.streams.values():
            stream.selected = stream.name == "invision_dataflow_runs"
        records = run_sync(tap).records["invision_dataflow_runs"]
        triggered += [r["dataflow_id"] for r in records]
    assert sorted(triggered) == flows  # each flow once, by one process


# --------------------------------------------------------------------------- shared budgets


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis database of its own (1; meltano.yml's partitions use 0), emptied of the
    tap's keys before and after."""
    import redis

    url = ensure_redis().rsplit("/", 1)[0] + "/1"
    client = redis.Redis.from_url(url)

    def clear() -> None:
        for key in client.scan_iter(f"{KEY_PREFIX}:*"):
            client.delete(key)

    clear()
    yield url
    clear()


@pytest.fixture
def limited_sandbox() -> Iterator[Sandbox]:
    sb = Sandbox(seed=11, scale=1).start()
    yield sb
    sb.stop()


def assert_inside_the_limit(outcome: Outcome) -> None:
    assert outcome.exit_codes == [0] * PARTITIONS, outcome
    assert outcome.requests > 5 * LIMIT, outcome  # long enough to cross many windows
    assert outcome.rejected == 0, outcome
    assert outcome.busiest_second <= LIMIT, outcome
    # A sanity bound only; bench/scale_out.py measures how close to the limit they run.
    assert outcome.active_seconds <= 3 * outcome.requests / LIMIT, outcome


def test_four_processes_sharing_redis_stay_inside_one_limit(
    limited_sandbox: Sandbox, redis_url: str, tmp_path: Path
) -> None:
    with cpu_burner():  # as requests arrive on a busy machine
        outcome = run_processes(limited_sandbox, limit=LIMIT, backend=redis_url, workdir=tmp_path)
    assert_inside_the_limit(outcome)


def test_four_processes_sharing_sqlite_stay_inside_one_limit(
    limited_sandbox: Sandbox, tmp_path: Path
) -> None:
    backend = f"sqlite:///{tmp_path / 'budgets.sqlite'}"
    with cpu_burner():  # as requests arrive on a busy machine
        outcome = run_processes(limited_sandbox, limit=LIMIT, backend=backend, workdir=tmp_path)
    assert_inside_the_limit(outcome)


def test_four_processes_with_memory_budgets_exceed_the_limit(
    limited_sandbox: Sandbox, tmp_path: Path
) -> None:
    # The control: each process keeps its own count, so together they send about four
    # times the limit, and the sandbox answers 429.
    outcome = run_processes(
        limited_sandbox, limit=LIMIT, backend="memory", workdir=tmp_path, stop_after_429=True
    )
    assert outcome.rejected > 0, outcome
    assert outcome.busiest_second > LIMIT, outcome


@pytest.mark.parametrize("kind", ["redis", "sqlite"])
def test_a_pause_from_the_platform_holds_every_process(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A 429's Retry-After seen by one process holds the others (two registries, each
    with its own connection to the backend, as two processes have)."""
    if kind == "redis":
        backend = request.getfixturevalue("redis_url")
    else:
        backend = f"sqlite:///{tmp_path / 'budgets.sqlite'}"
    credential = ("the-token",)
    first = BudgetRegistry(backend).get("dexi", credential, rates_per_second(100))
    other = BudgetRegistry(backend).get("dexi", credential, rates_per_second(100))
    stranger = BudgetRegistry(backend).get("dexi", ("another",), rates_per_second(100))
    first.pause_until(time.time() + 1.0, reason="HTTP 429")
    assert other.paused_for() > 0.8
    assert stranger.paused_for() == 0.0  # another credential's budget is not held
    waited = other.acquire()
    assert 0.8 <= waited <= 1.5
    # Pauses only extend: an earlier instant changes nothing.
    other.pause_until(time.time() + 5.0, reason="Retry-After")
    first.pause_until(time.time() + 0.1, reason="shorter")
    assert first.paused_for() > 4.0


def test_the_shared_backend_holds_no_secret(redis_url: str, tmp_path: Path) -> None:
    import sqlite3

    import redis

    secret = "tok-s3cret-value"
    sqlite_file = tmp_path / "budgets.sqlite"
    for backend in (redis_url, f"sqlite:///{sqlite_file}"):
        budget = BudgetRegistry(backend).get("redivis", (secret,), rates_per_second(50))
        budget.acquire()
        budget.pause_until(time.time() + 30, reason="test")
        assert secret not in budget.name
    client = redis.Redis.from_url(redis_url)
    stored = [k.decode() for k in client.scan_iter(f"{KEY_PREFIX}:*")]
    assert stored
    assert all(secret not in k for k in stored)
    for key in stored:
        kind = client.type(key).decode()
        read = {
            "string": client.get,
            "zset": lambda k: client.zrange(k, 0, -1),
            "hash": client.hgetall,
            "list": lambda k: client.lrange(k, 0, -1),
            "set": client.smembers,
        }
        value = read[kind](key) if kind in read else None
        assert secret not in str(value)
    with sqlite3.connect(sqlite_file) as con:
        dump = "\n".join(con.iterdump())
    assert "budget_pauses" in dump
    assert secret not in dump


@pytest.mark.parametrize("kind", ["redis", "sqlite"])
def test_a_burst_is_shared_too(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Datalinx's rate with a burst: two processes together get one burst, not two."""
    from pyrate_limiter import Rate

    if kind == "redis":
        backend = request.getfixturevalue("redis_url")
    else:
        backend = f"sqlite:///{tmp_path / 'budgets.sqlite'}"
    rates = [Rate(600, 60_000, burst=4)]  # ten a second sustained, four at once
    budgets = [BudgetRegistry(backend).get("datalinx", ("key",), rates) for _ in range(2)]
    started = time.monotonic()
    for n in range(6):
        budgets[n % 2].acquire()
    elapsed = time.monotonic() - started
    # Four at once, then the refill: the fifth and sixth wait 0.1 s each (sqlite's
    # windows make them wait for the whole burst's refill, 0.4 s, instead). Two
    # separate buckets would have let all six through at once.
    assert elapsed >= 0.18, elapsed
    assert elapsed <= 1.5, elapsed


def test_a_redis_lost_mid_sync_is_retried_then_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil
    import socket
    import subprocess

    from tap_dataplatforms.core import budget as budget_module

    ensure_redis()  # the client and a redis-server binary, or skip/fail as the others
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("no redis-server binary for a server of this test's own")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
    proc = subprocess.Popen(
        [*args, "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        backend = f"redis://:hunter2@127.0.0.1:{port}/0"
        for _ in range(100):
            try:
                registry = BudgetRegistry(backend)
                break
            except ConfigError:  # not up yet
                time.sleep(0.05)
        else:
            pytest.fail(f"the test's redis-server did not come up on port {port}")
        budget = registry.get("dexi", ("k",), rates_per_second(100))
        budget.acquire()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    monkeypatch.setattr(budget_module, "BACKEND_TRIES", 3)
    started = time.monotonic()
    with pytest.raises(budget_module.BudgetBackendError) as caught:
        budget.acquire()
    assert time.monotonic() - started >= 1.4  # retried with backoff: 0.5 s, then 1 s
    message = str(caught.value)
    assert message == (
        f"setting rate_limit_backend: lost redis at 127.0.0.1:{port} (ConnectionError)"
    )
