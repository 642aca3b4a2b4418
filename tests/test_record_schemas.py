"""Every record of every stream of the five platforms matches its SCHEMA (Draft 7,
date-time checked), and no record carries a property its schema leaves out. The default
sandbox serves the types the official clients and specs give, and fields nobody declared
on every object, nested ones too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator

from dataplatforms_sandbox import Sandbox
from dataplatforms_sandbox.shapes import OBJECT_FIELD, SCALAR_FIELD
from tests.helpers import make_tap
from tests.record_check import checked_sync, closed_objects, date_time_checker
from tests.reliability import PLATFORM_NAMES, new_sandbox, tap_config

#: Streams each platform's sync must deliver records for (so that a check of nothing
#: cannot pass): every stream the sandbox serves without a side effect, and those with one.
EXPECTED = {
    "dexi": ("dexi_runs", "dexi_executions", "dexi_files"),
    "reinfer": (
        "reinfer_projects",
        "reinfer_datasets",
        "reinfer_sources",
        "reinfer_comments",
        "reinfer_streams",
        "reinfer_labellings",
        "reinfer_predictions",
    ),
    "redivis": ("redivis_datasets", "redivis_tables", "redivis_variables"),
    "invision": ("invision_execution_log", "invision_dataflow_runs"),
    "datalinx": tuple(
        f"datalinx_{name}"
        for name in (
            "workspaces",
            "sources",
            "schemas",
            "mappings",
            "pipelines",
            "pipeline_runs",
            "audiences",
            "queries",
            "alerts",
            "users",
            "roles",
            "service_accounts",
        )
    ),
}
#: Streams whose records the tap makes itself (not an API object passed on).
TAP_MADE = frozenset({"dexi_files", "invision_dataflow_runs"})
#: Families of streams named after what they read (one per run, dataset or table).
FAMILIES = {
    "dexi": ("dexi_results__", "dexi_dataset_rows__"),
    "redivis": ("redivis_rows__",),
    "invision": ("invision_table__",),
}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    sb = new_sandbox()
    # Records of every stream are checked here, so the Datalinx instance has every route
    # (the default one lacks /alerts: tests/test_datalinx_sandbox.py).
    sb.datalinx.missing_routes = set()
    yield sb
    sb.stop()


def _config(sb: Sandbox, platform: str, work: Path) -> dict[str, Any]:
    config = tap_config(sb, platform, work)
    block = config[platform]
    if platform == "invision":  # the runs stream needs a data flow started
        block.update(
            dataflow_ids=[flow.id for flow in sb.invision.succeeding[:2]],
            trigger_dataflows=True,
            poll_interval_seconds=0.02,
        )
    return config


@pytest.mark.parametrize("platform", PLATFORM_NAMES)
def test_every_record_matches_its_schema(sandbox: Sandbox, platform: str, tmp_path: Path) -> None:
    result = checked_sync(_config(sandbox, platform, tmp_path))
    missing = [s for s in EXPECTED[platform] if not result.counts.get(s)]
    missing += [
        prefix
        for prefix in FAMILIES.get(platform, ())
        if not any(s.startswith(prefix) and n for s, n in result.counts.items())
    ]
    assert not missing, f"no records for {missing}"
    result.assert_clean()
    # Fields nobody declared reach the output, at the top and nested.
    for stream in set(EXPECTED[platform]) - TAP_MADE:
        for record in result.records[stream]:
            assert record[SCALAR_FIELD] == 2, (stream, record)
            assert record[OBJECT_FIELD]["beta"] is True, stream
    nested = {
        "dexi": ("dexi_runs", "inputs"),
        "reinfer": ("reinfer_comments", "messages"),
        "redivis": ("redivis_datasets", "owner"),
        "datalinx": ("datalinx_schemas", "columns"),
    }.get(platform)
    if nested is not None:
        stream, member = nested
        values = [record[member] for record in result.records[stream]]
        objects = [v for value in values for v in (value if isinstance(value, list) else [value])]
        assert objects, (stream, member)
        assert all(SCALAR_FIELD in o for o in objects), (stream, member)


def test_wide_values_arrive_as_sent(sandbox: Sandbox, tmp_path: Path) -> None:
    """Values of wide types pass the conformance step untouched: numbers stay numbers,
    text stays text, lists stay lists."""
    reinfer = checked_sync(_config(sandbox, "reinfer", tmp_path))
    labels = [
        (kind, label["sentiment"])
        for record in reinfer.records["reinfer_labellings"]
        for group in record.get("labelling") or []
        for kind in ("assigned", "predicted")
        for label in group.get(kind) or []
    ]
    assert {type(v) for kind, v in labels if kind == "assigned"} == {str}
    assert {type(v) for kind, v in labels if kind == "predicted"} == {float}
    flags = [r["_dataset_flags"] for r in reinfer.records["reinfer_datasets"]]
    assert all(isinstance(f, list) for f in flags)
    assert ["gpt4"] in flags
    dexi = checked_sync(_config(sandbox, "dexi", tmp_path))
    inputs = [r["inputs"] for r in dexi.records["dexi_runs"]]
    assert {type(i) for i in inputs} == {dict, list}


@pytest.mark.parametrize("platform", PLATFORM_NAMES)
def test_every_object_schema_is_open(sandbox: Sandbox, platform: str, tmp_path: Path) -> None:
    tap = make_tap(_config(sandbox, platform, tmp_path))
    closed = {name: closed_objects(s.schema) for name, s in tap.streams.items()}
    assert len(tap.streams) >= len(EXPECTED[platform])
    assert not {name: where for name, where in closed.items() if where}


def test_flattened_records_match_their_flattened_schema(sandbox: Sandbox, tmp_path: Path) -> None:
    """Schema flattening (the SDK's) over wide types, lists and open objects."""
    config = {
        **_config(sandbox, "reinfer", tmp_path),
        "flattening_enabled": True,
        "flattening_max_depth": 2,
    }
    result = checked_sync(config)
    result.assert_clean()
    labels = result.schemas["reinfer_labellings"]["properties"]
    assert "comment__messages" in labels  # flattened, the list kept whole as JSON
    datasets = result.schemas["reinfer_datasets"]["properties"]
    assert "_dataset_flags" in datasets
    assert any(r.get("_dataset_flags") for r in result.records["reinfer_datasets"])


def test_the_check_sees_a_bad_date_time_and_a_wrong_type() -> None:
    schema = {
        "type": "object",
        "properties": {
            "at": {"type": ["string", "null"], "format": "date-time"},
            "flags": {"type": ["array", "null"], "items": {"type": "string"}},
        },
    }
    validator = Draft7Validator(schema, format_checker=date_time_checker())
    assert validator.is_valid({"at": "2024-05-01T10:00:00.5Z", "flags": ["gpt4"]})
    assert not validator.is_valid({"at": "2024-05-01 10:00:00"})
    assert not validator.is_valid({"flags": {"gpt4": True}})


@pytest.mark.parametrize("forms", [("enum_numbers",), ("text_rowids",), ("object_data",)])
def test_invision_log_values_in_every_form_arrive_as_sent(
    sandbox: Sandbox, tmp_path: Path, forms: tuple[str, ...]
) -> None:
    """The monitoring API's value types are not documented: ids as text, levels and event
    types as .NET enum numbers, structured event data. Each matches the schema and reaches
    the output as the installation sent it."""
    model = sandbox.invision
    before = model.log_forms
    model.log_forms = frozenset(forms)
    try:
        config = tap_config(sandbox, "invision", tmp_path)
        config["invision"]["tables"] = []
        result = checked_sync(config)
        served = {str(row["rowid"]): row for row in model.execution_rows()}
    finally:
        model.log_forms = before
    result.assert_clean()
    records = result.records["invision_execution_log"]
    assert records, "no log rows"
    assert {str(r["rowid"]) for r in records} <= set(served)
    for record in records:
        row = served[str(record["rowid"])]
        for member in ("rowid", "level", "logevent", "data"):
            assert record[member] == row[member], (member, record, row)
    kinds = {member: {type(r[member]) for r in records} for member in ("rowid", "level", "data")}
    if "enum_numbers" in forms:
        assert kinds["level"] == {int}
    if "text_rowids" in forms:
        assert kinds["rowid"] == {str}
    if "object_data" in forms:
        assert kinds["data"] == {str, dict}
