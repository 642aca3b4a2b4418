"""The Singer SDK's standard tap tests on the InVision streams, against the sandbox."""

from __future__ import annotations

import datetime as dt

from singer_sdk.testing import SuiteConfig

from dataplatforms_sandbox import CREDENTIALS, Sandbox
from tap_dataplatforms.tap import TapDataPlatforms
from tests.standard import tap_test_class

_SANDBOX = Sandbox(seed=11, scale=1).start()
_START = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=3)

TestInVisionStandard = tap_test_class(
    tap_class=TapDataPlatforms,
    config={
        "start_date": _START.isoformat(),
        "invision": {
            "api_url": _SANDBOX.base_url("invision"),
            "api_key": CREDENTIALS["invision"]["api_key"],
            "tables": ["GL_Actuals", "Cost Centers"],
            "max_requests_per_second": 200,
        },
    },
    # Runs are records only when trigger_dataflows starts them, a side effect left off here.
    suite_config=SuiteConfig(
        max_records_limit=None, ignore_no_records_for_streams=["invision_dataflow_runs"]
    ),
)
