"""Dagster: the partitioned Meltano pipelines of meltano.yml, all at the same time.

One op per partition (``meltano run partition-<i>-to-postgres``), and a job that starts
them together on Dagster's multiprocess executor, once an op has brought Meltano's system
database up to date (``meltano upgrade database``: four runs migrating a new database at
once collide). The partitions are read from
meltano.yml (the jobs named ``partition-<i>-to-postgres``), so a fifth one there is a
fifth op here. Each partition has its own Meltano state id; their request budgets are
shared through the Redis their extractors name (``rate_limit_backend``), so together
they stay inside each account's limit.

Dagster lives in its own environment (``make dagster``: ``.venv-dagster``) and calls
the Meltano executable, found in ``MELTANO_EXECUTABLE``, then ``.venv-meltano``, then
on ``PATH``. The ops pass their environment on to Meltano (``MELTANO_ENVIRONMENT``,
``MELTANO_DATABASE_URI``, ``TAP_DATAPLATFORMS_*``...).

    DAGSTER_HOME=/tmp/dagster .venv-dagster/bin/dagster job execute \\
        -f orchestration/dagster_defs.py -j partitions_to_postgres
"""

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import yaml
from dagster import (
    Definitions,
    Failure,
    In,
    MetadataValue,
    Nothing,
    OpDefinition,
    OpExecutionContext,
    Out,
    job,
    multiprocess_executor,
    op,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PARTITION_JOB = re.compile(r"partition-(\d+)-to-postgres")
# Long enough for a full extraction inside the platforms' budgets.
RUN_TIMEOUT_SECONDS = 6 * 3600
LOG_TAIL_CHARS = 4000


def meltano_executable() -> str:
    configured = os.environ.get("MELTANO_EXECUTABLE")
    if configured:
        return configured
    local = PROJECT_ROOT / ".venv-meltano" / "bin" / "meltano"
    if local.exists():
        return str(local)
    return shutil.which("meltano") or "meltano"


def partition_jobs(meltano_yml: Path = PROJECT_ROOT / "meltano.yml") -> list[str]:
    """The Meltano jobs of the partitions, in partition order."""
    project = yaml.safe_load(meltano_yml.read_text())
    names = [str(j["name"]) for j in project.get("jobs") or []]
    found = [(int(m.group(1)), n) for n in names if (m := PARTITION_JOB.fullmatch(n))]
    return [name for _, name in sorted(found)]


def run_meltano(context: OpExecutionContext, *args: str) -> None:
    """Run one Meltano command in the project; fail with the end of Meltano's log."""
    command = [meltano_executable(), *args]
    what = " ".join(["meltano", *args])
    context.log.info(f"Running {' '.join(command)}")
    started = time.monotonic()
    try:
        result = subprocess.run(
            command,
            cwd=PROJECT_ROOT,
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise Failure(f"{what} timed out") from exc
    seconds = round(time.monotonic() - started, 1)
    tail = (result.stdout + result.stderr)[-LOG_TAIL_CHARS:]
    if result.returncode != 0:
        # In the run's log too, where a scheduler's alert points, not only in metadata.
        context.log.error(f"{what} failed; its log ends:\n{tail}")
        raise Failure(
            f"{what} exited with {result.returncode}",
            metadata={"seconds": seconds, "log_tail": MetadataValue.text(tail)},
        )
    context.log.info(f"{what} finished in {seconds}s")


@op(name="meltano_system_database", out=Out(Nothing))
def system_database(context: OpExecutionContext) -> None:
    """Bring Meltano's system database up to date once, before the partitions start:
    several `meltano run` at once on a new database would each try to create its tables."""
    run_meltano(context, "upgrade", "database")


def meltano_run_op(meltano_job: str) -> OpDefinition:
    """An op that runs one Meltano job (one partition)."""

    @op(
        name=meltano_job.replace("-", "_"),
        ins={"database_ready": In(Nothing)},
        tags={"meltano_job": meltano_job},
    )
    def run_partition(context: OpExecutionContext) -> None:
        run_meltano(context, "run", meltano_job)

    return run_partition


PARTITION_OPS = [meltano_run_op(name) for name in partition_jobs()]


@job(
    name="partitions_to_postgres",
    description="Every partition of meltano.yml at once, each its own Meltano run.",
    executor_def=multiprocess_executor.configured({"max_concurrent": max(1, len(PARTITION_OPS))}),
)
def partitions_to_postgres() -> None:
    # The partitions depend on the database only, not on each other: the executor starts
    # them all at once.
    ready = system_database()
    for partition_op in PARTITION_OPS:
        partition_op(database_ready=ready)


defs = Definitions(jobs=[partitions_to_postgres])
