"""Datalinx schemas from the instance's OpenAPI document (``/api/openapi.json``) when it
answers, the written ones when it does not; routes the document lacks are not offered."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from dataplatforms_sandbox import CREDENTIALS, Sandbox
from tap_dataplatforms.datalinx import schemas
from tap_dataplatforms.datalinx.openapi import OpenApiDocument
from tests.helpers import make_tap
from tests.record_check import checked_sync


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    sb = Sandbox(seed=5, scale=1, limits={"datalinx": (100_000, 60.0)}).start()
    yield sb
    sb.stop()


def config(sb: Sandbox) -> dict[str, Any]:
    block = {
        "api_url": sb.base_url("datalinx"),
        "api_key": CREDENTIALS["datalinx"]["api_key"],
        "max_requests_per_second": 1000,
    }
    return {"datalinx": block}


def test_properties_come_from_the_published_document(sandbox: Sandbox) -> None:
    tap = make_tap(config(sandbox))
    properties = tap.streams["datalinx_schemas"].schema["properties"]
    # Only the document knows row_count; it is typed as the document says.
    assert "row_count" not in schemas.SCHEMAS["properties"]
    assert properties["row_count"]["type"] == ["integer", "null"]
    assert properties["created_at"]["format"] == "date-time"
    columns = properties["columns"]["items"]
    assert columns["properties"]["nullable"]["type"] == ["boolean"]  # required there
    assert columns["additionalProperties"] is True
    # The tap's own key stays the tap's.
    assert properties["workspace"] == schemas.SCHEMAS["properties"]["workspace"]
    # Every record of every stream still matches (the document's types, extra fields).
    result = checked_sync(config(sandbox))
    result.assert_clean()
    assert any(r.get("row_count") for r in result.records["datalinx_schemas"])


def test_without_a_document_the_written_schemas_apply(sandbox: Sandbox) -> None:
    sandbox.datalinx.openapi_served = False
    tap = make_tap(config(sandbox))
    assert tap.streams["datalinx_schemas"].schema == schemas.SCHEMAS
    assert len([n for n in tap.streams if n.startswith("datalinx_")]) == 12
    checked_sync(config(sandbox)).assert_clean()


@pytest.mark.parametrize("status", [401, 403])
def test_a_document_refused_leaves_the_written_schemas_with_one_warning(
    sandbox: Sandbox, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    """The document is optional: an instance that refuses it (401 or 403, a gateway that
    guards it) is read with the written schemas, after one warning, not ended."""
    sandbox.datalinx.openapi_denied = status
    tap = make_tap(config(sandbox))
    assert tap.streams["datalinx_schemas"].schema == schemas.SCHEMAS
    assert len([n for n in tap.streams if n.startswith("datalinx_")]) == 12
    warnings = [r for r in caplog.records if "OpenAPI document" in r.getMessage()]
    assert [r.levelname for r in warnings] == ["WARNING"]
    assert f"HTTP {status}" in warnings[0].getMessage()
    assert "written schemas" in warnings[0].getMessage()
    checked_sync(config(sandbox)).assert_clean()


def test_a_route_the_document_lacks_is_not_offered(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox.datalinx.openapi_hidden = frozenset({"/alerts", "/pipelines"})
    sandbox.datalinx.missing_routes = {"queries"}  # a 404, and absent from the document
    tap = make_tap(config(sandbox))
    assert "datalinx_queries" not in tap.streams
    assert "datalinx_alerts" not in tap.streams
    assert "datalinx_pipelines" not in tap.streams
    assert "datalinx_pipeline_runs" not in tap.streams  # listed per pipeline
    assert "datalinx_sources" in tap.streams
    assert "no route for datalinx_pipelines (GET /pipelines)" in caplog.text


def _document(item: dict[str, Any], *, envelope: bool = True) -> OpenApiDocument:
    data = {"type": "array", "items": {"$ref": "#/components/schemas/Item"}}
    body: dict[str, Any] = (
        {"type": "object", "properties": {"status": {"type": "string"}, "data": data}}
        if envelope
        else data
    )
    answer = {"content": {"application/json": {"schema": body}}}
    return OpenApiDocument(
        {
            "openapi": "3.0.3",
            "paths": {"/things/{thing_id}/parts": {"get": {"responses": {"200": answer}}}},
            "components": {
                "schemas": {
                    "Item": item,
                    "Inner": {"type": "object", "properties": {"k": {"type": "string"}}},
                }
            },
        }
    )


def test_openapi_forms_become_draft_7() -> None:
    item = {
        "type": "object",
        "properties": {
            "a": {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]},
            "b": {"type": "integer", "nullable": True},  # OpenAPI 3.0
            "c": {"allOf": [{"$ref": "#/components/schemas/Inner"}]},
            "d": {"anyOf": [{"$ref": "#/components/schemas/Inner"}, {"type": "null"}]},
            "e": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            "f": {"type": "array", "items": {"$ref": "#/components/schemas/Inner"}},
            "g": {"title": "Anything"},
            "h": {"$ref": "#/components/schemas/Missing"},
        },
    }
    for envelope in (True, False):
        document = _document(item, envelope=envelope)
        assert document.has_list_route("/things/{id}/parts")
        assert not document.has_list_route("/things")
        got = document.item_schema("/things/{x}/parts")
        assert got is not None
        p = got["properties"]
        assert p["a"] == {"type": ["string", "null"], "format": "date-time"}
        assert p["b"] == {"type": ["integer", "null"]}
        inner = {
            "type": ["object"],
            "properties": {"k": {"type": ["string"]}},
            "additionalProperties": True,
        }
        assert p["c"] == inner
        assert p["d"] == {**inner, "type": ["object", "null"]}
        assert p["e"] == {"type": ["string", "integer"]}
        assert p["f"] == {"type": ["array"], "items": inner}
        assert p["g"] == {}
        assert p["h"] == {}
        assert got["additionalProperties"] is True


def test_a_document_without_a_list_answer_gives_no_schema() -> None:
    document = OpenApiDocument({"paths": {"/x": {"get": {"responses": {}}}}})
    assert document.has_list_route("/x")
    assert document.item_schema("/x") is None
    with pytest.raises(ValueError, match="no paths"):
        OpenApiDocument({"openapi": "3.1.0"})
