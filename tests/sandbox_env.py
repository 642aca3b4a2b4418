"""Sandboxes for tests: one shared per process, or a fresh one per test."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from dataplatforms_sandbox import CREDENTIALS, Sandbox

# Generous limits for tests that are not about limits, so suites do not throttle each other.
ROOMY_LIMITS = {"redivis": (100_000, 60.0)}
# Before all of the sandbox's data, so that every incremental stream is read whole.
START_DATE = "2000-01-01T00:00:00Z"


@functools.cache
def shared_sandbox() -> Sandbox:
    return Sandbox(seed=1, scale=1, limits=ROOMY_LIMITS).start()


def redivis_config(sandbox: Sandbox, **extra: Any) -> dict[str, Any]:
    block = {
        "api_url": sandbox.base_url("redivis"),
        "token": CREDENTIALS["redivis"]["token"],
        "organizations": ["demo", "census_archive"],
        "users": ["jdoe"],
    }
    block.update(extra)
    return {"redivis": block}


def all_platforms(sb: Sandbox, files_dir: Path, *, trigger: bool = False) -> dict[str, Any]:
    """Every platform at the sandbox, with every kind of parent the partition splits."""
    fast = {"max_requests_per_second": 5000}
    readable = [
        t
        for ds in sb.redivis.datasets_by_owner["demo"]
        if ds.may("data")
        for t in ds.current_tables
    ][:4]
    for table in readable:
        table.num_rows = min(table.num_rows, 40)  # the model serves whatever size it holds
    return {
        "start_date": START_DATE,
        "redivis": {
            "api_url": sb.base_url("redivis"),
            **CREDENTIALS["redivis"],
            "organizations": ["demo", "census_archive"],
            "users": ["jdoe"],
            "tables": [t.qualified_reference for t in readable],
            **fast,
        },
        "dexi": {
            "api_url": sb.base_url("dexi"),
            **CREDENTIALS["dexi"],
            "dataset_ids": list(sb.dexi.datasets),
            "download_files": True,
            "files_dir": str(files_dir),
            **fast,
        },
        "reinfer": {"api_url": sb.base_url("reinfer"), **CREDENTIALS["reinfer"], **fast},
        "invision": {
            "api_url": sb.base_url("invision"),
            **CREDENTIALS["invision"],
            "tables": list(sb.invision.tables),
            "dataflow_ids": [f.id for f in sb.invision.succeeding],
            # Triggering is a side effect that adds log rows: that test comes apart.
            "trigger_dataflows": trigger,
            "poll_interval_seconds": 0.02,
            "await_timeout_seconds": 20,
            **fast,
        },
        "datalinx": {
            "api_url": sb.base_url("datalinx"),
            "api_key": CREDENTIALS["datalinx"]["api_key"],
            **fast,
        },
    }
