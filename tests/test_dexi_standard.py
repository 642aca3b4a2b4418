"""The Singer SDK's standard tap tests on the Dexi streams, against the sandbox."""

from __future__ import annotations

from singer_sdk.testing import SuiteConfig

from dataplatforms_sandbox import CREDENTIALS, Sandbox
from tap_dataplatforms.tap import TapDataPlatforms
from tests.standard import tap_test_class

_SANDBOX = Sandbox(seed=13, scale=1, limits={"dexi": (100_000, 60.0)}).start()
_MODEL = _SANDBOX.dexi

TestDexiStandard = tap_test_class(
    tap_class=TapDataPlatforms,
    config={
        "dexi": {
            "api_url": _SANDBOX.base_url("dexi"),
            **CREDENTIALS["dexi"],
            # Small runs with results, one of them named like another (slug suffixes).
            "run_ids": [r.id for r in _MODEL.runs[1:4]],
            "dataset_ids": list(_MODEL.datasets),
            "max_requests_per_second": 1000,
        },
    },
    # Files are downloaded only with download_files, a disk side effect left off here.
    suite_config=SuiteConfig(max_records_limit=None, ignore_no_records_for_streams=["dexi_files"]),
)
