"""End to end, the warehouse mirrors the source: three real ``meltano run``s into
PostgreSQL with the sandbox changing between them (``Sandbox.change``): Dexi datasets lose
rows, a robot gains output columns (one of them widening from integer to number) and an
idle run is deleted, InVision data flows rewrite their tables with half the rows and a new
column, a Redivis table gets a new version with a new variable and half its rows, a
Re:infer dataset loses a stream and a labelled comment and a source goes, a Datalinx
pipeline run is purged and a user and a role are removed.

``dexi_runs`` is loaded with its ``version`` field renamed by a stream map
(``RENAME_VERSION``): target-postgres 0.8.1 fails its soft delete in a table with a
``version`` column, and the tap mirrors the stream once the field is renamed.

After each run, for ``hard_delete`` false (rows of older versions get ``_sdc_deleted_at``)
and true (they are deleted), the live rows of every table (``_sdc_deleted_at`` null) are
exactly the sandbox's data, no row twice; new columns exist, older rows read them null.
Fixtures and helpers: tests/test_e2e_postgres.py (Meltano, target-postgres, the server).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dataplatforms_sandbox import Sandbox
from tap_dataplatforms.core.naming import slug
from tests.test_e2e_postgres import (
    ROOMY,
    SCHEMA,
    Pipeline,
    database,  # noqa: F401 (fixture)
    demo,
    ensure_plugins,
    expected_keys,
    key_columns,
    meltano_env,
    server,  # noqa: F401 (fixture)
    sql,
)

pytestmark = pytest.mark.e2e

ROWS = 40  # rows of the Redivis table read (the sandbox's may be millions)
SELECT = [
    "redivis_*.*",
    "dexi_runs.*",
    "dexi_executions.*",
    "dexi_results__*.*",
    "dexi_dataset_rows__*.*",
    "invision_table__*.*",
    "reinfer_projects.*",
    "reinfer_datasets.*",
    "reinfer_sources.*",
    "reinfer_streams.*",
    "reinfer_labellings.*",
    "datalinx_workspaces.*",
    "datalinx_pipeline_runs.*",
    "datalinx_users.*",
    "datalinx_roles.*",
    "datalinx_service_accounts.*",
]
KEYED = (
    "redivis_datasets",
    "redivis_tables",
    "redivis_variables",
    "dexi_runs",
    "dexi_executions",
    "reinfer_projects",
    "reinfer_datasets",
    "reinfer_sources",
    "reinfer_streams",
    "reinfer_labellings",
    "datalinx_workspaces",
    "datalinx_pipeline_runs",
    "datalinx_users",
    "datalinx_roles",
    "datalinx_service_accounts",
)
RENAME_VERSION = {"dexi_runs": {"robot_version": "version", "version": "__NULL__"}}


def _slug(text: str) -> str:
    return slug(text)


@pytest.fixture(params=[False, True], ids=["soft-delete", "hard-delete"])
def mirror(
    request: pytest.FixtureRequest,
    database: str,  # noqa: F811
    tmp_path: Path,
) -> Iterator[Pipeline]:
    sandbox = Sandbox(seed=3, scale=1, limits=ROOMY).start()
    sandbox.platform("dexi").set_write_limit(1_000_000)  # type: ignore[attr-defined]
    sandbox.datalinx.burst = (1_000_000, 1_000_000.0)
    table = sandbox.changing_table()
    table.num_rows = ROWS
    try:
        env = meltano_env(sandbox, database, tmp_path)
        reference = f"{table.dataset.qualified_reference}.{table.scoped_reference}"
        prefix = demo.ENV_PREFIX
        env.update(
            {
                f"{prefix}REDIVIS_TABLES": f'["{reference}"]',
                f"{prefix}DEXI_DATASET_IDS": demo.json.dumps(list(sandbox.dexi.datasets)),
                f"{prefix}DEXI_DOWNLOAD_FILES": "false",
                f"{prefix}INVISION_TABLES": demo.json.dumps(list(sandbox.invision.tables)),
                f"{prefix}_SELECT": demo.json.dumps(SELECT),
                f"{prefix}STREAM_MAPS": demo.json.dumps(RENAME_VERSION),
                "TARGET_POSTGRES_HARD_DELETE": "true" if request.param else "false",
            }
        )
        log = tmp_path / "meltano.log"
        ensure_plugins(env, log)
        yield Pipeline(sandbox, database, env, log)
    finally:
        sandbox.stop()


def live(url: str) -> dict[str, tuple[list[str], list[tuple[Any, ...]]]]:
    """Every table of the schema: its columns and its live rows (values as text)."""
    (tables,) = sql(
        url,
        (
            "select table_name from information_schema.tables where table_schema = %s",
            [SCHEMA],
        ),
    )
    names = [n for (n,) in tables]
    (columns,) = sql(
        url,
        (
            "select table_name, column_name from information_schema.columns "
            "where table_schema = %s order by ordinal_position",
            [SCHEMA],
        ),
    )
    by_table: dict[str, list[str]] = {n: [] for n in names}
    for table, column in columns:
        by_table[table].append(column)
    statements = [
        f'select * from "{SCHEMA}"."{n}" where _sdc_deleted_at is null'  # noqa: S608
        for n in names
    ]
    rows = sql(url, *statements)
    return {n: (by_table[n], [tuple(r) for r in rows[i]]) for i, n in enumerate(names)}


def column(table: tuple[list[str], list[tuple[Any, ...]]], name: str) -> list[Any]:
    index = table[0].index(name)
    return [row[index] for row in table[1]]


def assert_mirrors(sb: Sandbox, url: str, run: int) -> None:
    tables = live(url)
    where = f"after run {run}"
    # Keyed metadata and incremental tables: exactly the sandbox's keys, each once.
    expected = expected_keys(sb)
    results: list[tuple[Any, ...]] = []
    for name, (cols, rows) in tables.items():
        keys = key_columns(name)
        if name.startswith("dexi_results__"):
            results += [tuple(r[cols.index(k)] for k in keys) for r in rows]
        elif name in KEYED:
            have = [tuple(r[cols.index(k)] for k in keys) for r in rows]
            assert len(have) == len(set(have)), f"{name}: a key twice {where}"
            assert set(have) == expected[name], (
                f"{name} {where}: missing {sorted(expected[name] - set(have))[:3]}, "
                f"not in the source {sorted(set(have) - expected[name])[:3]}"
            )
    assert Counter(results) == Counter(expected["dexi_results__*"]), f"dexi results {where}"
    # Dexi datasets: every row the dataset has, none it lost.
    for dataset_id, rows in sb.dexi.datasets.items():
        table = tables[f"dexi_dataset_rows__{_slug(dataset_id)}"]
        have = sorted(zip(column(table, "sku"), column(table, "price"), strict=True))
        assert have == sorted((r["sku"], r["price"]) for r in rows), f"{dataset_id} {where}"
    # InVision tables (no key): the rows of the last rewrite, once each.
    for name, rows in sb.invision.tables.items():
        table = tables[f"invision_table__{_slug(name)}"]
        first = next(iter(rows[0])) if rows else None
        assert len(table[1]) == len(rows), f"{name} {where}: {len(table[1])} rows, {len(rows)}"
        if first is not None:
            assert Counter(column(table, first)) == Counter(str(r[first]) for r in rows), name
    # The Redivis table: its current version's rows (ids 1..n), once each.
    redivis = sb.changing_table()
    (name,) = [n for n in tables if n.startswith("redivis_rows__")]
    ids = column(tables[name], f"{redivis.name}_id")
    assert sorted(int(i) for i in ids) == list(range(1, redivis.num_rows + 1)), where
    for variable in redivis.variables:
        assert variable.name in tables[name][0], f"{variable.name} missing {where}"


def test_three_runs_with_deletions_rewrites_and_new_columns(mirror: Pipeline) -> None:
    sb = mirror.sandbox
    for run in (1, 2, 3):
        if run > 1:
            sb.change()
        result = mirror.run()
        assert result.returncode == 0, f"meltano run {run} failed\n{mirror.details()}"
        assert_mirrors(sb, mirror.url, run)
    tables = live(mirror.url)
    # Columns arrived: the robot's, the data flow's, the Redivis variable's; rows from
    # before a column existed read it null.
    robot = sb.dexi.runs[0]
    (results,) = [
        n for n in tables if n.startswith("dexi_results__") and "discount" in tables[n][0]
    ]
    discounts = column(tables[results], "discount")
    assert None in discounts  # executions from before the robot had the column
    (((kind,),),) = sql(
        mirror.url,
        (
            "select data_type from information_schema.columns where table_schema = %s "
            "and table_name = %s and column_name = 'discount'",
            [SCHEMA, results],
        ),
    )
    # Whole numbers first, fractions since: every value loads as the source has it.
    assert kind == "numeric", kind
    want = sorted(
        float(row[7])
        for e in sb.dexi.readable_results(robot.id)
        for row in e.rows
        if len(row) > 7 and row[7] is not None
    )
    assert any(not v.is_integer() for v in want)
    assert sorted(float(d) for d in discounts if d is not None) == want
    gl = tables[f"invision_table__{_slug('GL_Actuals')}"]
    assert {"Currency", "Currency2"} <= set(gl[0])
    assert set(column(gl, "Currency")) <= {"NOK", "EUR", "USD"}
