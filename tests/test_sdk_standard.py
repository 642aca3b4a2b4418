"""The Singer SDK's standard tap tests, against the sandbox."""

from __future__ import annotations

from singer_sdk.testing import SuiteConfig

from tap_dataplatforms.tap import TapDataPlatforms
from tests.sandbox_env import redivis_config, shared_sandbox
from tests.standard import tap_test_class

TestTapDataPlatforms = tap_test_class(
    tap_class=TapDataPlatforms,
    config=redivis_config(
        shared_sandbox(), users=["jdoe"], organizations=["demo"], max_requests_per_second=200
    ),
    suite_config=SuiteConfig(max_records_limit=None),
)
