"""Sandboxes for tests: one shared per process, or a fresh one per test."""

from __future__ import annotations

import functools
from typing import Any

from dataplatforms_sandbox import CREDENTIALS, Sandbox

# Generous limits for tests that are not about limits, so suites do not throttle each other.
ROOMY_LIMITS = {"redivis": (100_000, 60.0)}


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
