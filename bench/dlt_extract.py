"""dlt's ``rest_api`` source on the benchmark's endpoints, extract step only.

    python bench/dlt_extract.py SPEC.json WORKDIR

Builds a declarative ``rest_api`` configuration for the platform in SPEC (the same
endpoints the tap and the floor read), runs ``pipeline.extract`` into a pipeline directory
under WORKDIR, and prints one JSON line with the items dlt counted per table, which the
benchmark compares with the sandbox's own count. Runs in the benchmark's dlt environment.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import dlt
from dlt.sources.rest_api import rest_api_source


def dexi_config(spec: dict[str, Any]) -> dict[str, Any]:
    headers = spec["result_headers"]

    def as_record(row: list[Any]) -> dict[str, Any]:
        # Dexi's result rows are arrays aligned with the body's `headers`; the columns of
        # a run are fixed, so they are configuration here.
        return dict(zip(headers, row, strict=False))

    return {
        "client": {"base_url": spec["base_url"], "headers": spec["auth"]},
        "resources": [
            {
                "name": "executions",
                "endpoint": {
                    "path": f"runs/{spec['run_id']}/executions",
                    "data_selector": "rows",
                    "paginator": {
                        "type": "offset",
                        "limit": 200,
                        "offset_param": "offset",
                        "limit_param": "limit",
                        "total_path": "totalRows",
                    },
                },
            },
            {
                "name": "results",
                "endpoint": {
                    "path": "executions/{resources.executions._id}/result",
                    "params": {"format": "json"},
                    "data_selector": "rows",
                    "paginator": "single_page",
                },
                "processing_steps": [{"map": as_record}],
            },
        ],
    }


def reinfer_config(spec: dict[str, Any]) -> dict[str, Any]:
    resources = []
    for index, source in enumerate(spec["sources"]):
        resources.append(
            {
                "name": f"comments_{index}",
                "table_name": "comments",
                "endpoint": {
                    "path": f"api/_private/sources/{source}/comments",
                    "params": {"limit": 256},
                    "data_selector": "comments",
                    "paginator": {
                        "type": "cursor",
                        "cursor_path": "continuation",
                        "cursor_param": "after",
                    },
                },
            }
        )
    return {
        "client": {"base_url": spec["base_url"].rstrip("/") + "/", "headers": spec["auth"]},
        "resources": resources,
    }


CONFIGS = {"dexi": (dexi_config, "results"), "reinfer": (reinfer_config, "comments")}


def main() -> int:
    with open(sys.argv[1]) as handle:
        spec = json.load(handle)
    build, table = CONFIGS[spec["platform"]]
    source = rest_api_source(build(spec))
    pipeline = dlt.pipeline(
        pipeline_name=f"bench_{spec['platform']}", pipelines_dir=sys.argv[2], dev_mode=True
    )
    info = pipeline.extract(source)
    counts: dict[str, int] = {}
    for step_metrics in info.metrics.values():
        for metrics in step_metrics:
            for name, table_metrics in metrics.get("table_metrics", {}).items():
                counts[name] = counts.get(name, 0) + int(table_metrics.items_count)
    print(json.dumps({"table": table, "records": counts.get(table, 0), "tables": counts}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
