"""The OpenAPI document the emulated Datalinx instance serves at ``/api/openapi.json``.

Shaped as a FastAPI application (pydantic models) publishes it: OpenAPI 3.1, one model per
resource under ``components/schemas``, optional fields as ``anyOf`` with ``{"type":
"null"}``, nested models and list envelopes through ``$ref``, free-form objects as
``{"type": "object", "additionalProperties": true}``, titles everywhere. It describes the
objects the sandbox serves, including fields the project's notes do not list (the notes
are assumptions; the instance's document is the authority).
"""

from __future__ import annotations

from typing import Any

#: Field kinds: a JSON Schema fragment for each; ``?`` after a kind makes it optional.
_KINDS: dict[str, dict[str, Any]] = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "num": {"type": "number"},
    "bool": {"type": "boolean"},
    "time": {"type": "string", "format": "date-time"},
    "dict": {"type": "object", "additionalProperties": True},
    "strs": {"type": "array", "items": {"type": "string"}},
}
_TIMES = {"created_at": "time", "updated_at": "time"}
#: Model name -> field -> kind (a ``_KINDS`` key, ``ref:Model`` or ``refs:Model``).
MODELS: dict[str, dict[str, str]] = {
    "WorkspaceOut": {"id": "str", "name": "str", "config": "dict?", **_TIMES},
    "SourceOut": {
        "id": "str",
        "name": "str",
        "type": "str",
        "connector": "str",
        "status": "str",
        "description": "str?",
        "config": "dict?",
        **_TIMES,
    },
    "ColumnOut": {"name": "str", "type": "str", "nullable": "bool", "description": "str?"},
    "SchemaOut": {
        "id": "str?",
        "name": "str",
        "schema_type": "str",
        "table_name": "str",
        "source_id": "str?",
        "row_count": "int?",
        "columns": "refs:ColumnOut",
        **_TIMES,
    },
    "FieldMappingOut": {"target_field": "str", "mapping_type": "str", "expression": "str?"},
    "MappingOut": {
        "id": "str?",
        "name": "str",
        "table_name": "str",
        "source_table": "str?",
        "fields": "refs:FieldMappingOut",
        **_TIMES,
    },
    "PipelineOut": {
        "id": "str",
        "name": "str",
        "description": "str?",
        "status": "str",
        "schedule": "str?",
        "last_run_at": "time?",
        "last_run_status": "str?",
        **_TIMES,
    },
    "PipelineRunOut": {
        "id": "str",
        "pipeline_id": "str",
        "status": "str",
        "started_at": "time",
        "finished_at": "time?",
        "duration_seconds": "num?",
        "records_processed": "int?",
        "error": "str?",
        "triggered_by": "str?",
    },
    "AudienceOut": {
        "id": "str",
        "name": "str",
        "description": "str?",
        "definition": "dict?",
        "size": "int?",
        "status": "str",
        **_TIMES,
    },
    "QueryOut": {
        "id": "str",
        "name": "str",
        "description": "str?",
        "sql": "str",
        "created_by": "str?",
        "last_run_at": "time?",
        **_TIMES,
    },
    "AlertOut": {
        "id": "str",
        "name": "str",
        "type": "str",
        "severity": "str",
        "status": "str",
        "target": "str?",
        "condition": "dict?",
        "triggered_at": "time?",
        **_TIMES,
    },
    "UserOut": {
        "id": "str",
        "email": "str",
        "name": "str?",
        "roles": "strs",
        "is_active": "bool",
        "created_at": "time",
        "last_login_at": "time?",
    },
    "RoleOut": {
        "id": "str",
        "name": "str",
        "description": "str?",
        "permissions": "strs",
        "is_system": "bool",
        **_TIMES,
    },
    "ServiceAccountOut": {
        "id": "str",
        "name": "str",
        "description": "str?",
        "role": "str",
        "created_at": "time",
        "last_used_at": "time?",
        "api_key_prefix": "str?",
    },
}
#: List route -> the model of its items.
ROUTES = {
    "/workspaces": "WorkspaceOut",
    "/sources": "SourceOut",
    "/schemas": "SchemaOut",
    "/mappings": "MappingOut",
    "/pipelines": "PipelineOut",
    "/pipelines/{pipeline_id}/runs": "PipelineRunOut",
    "/audiences": "AudienceOut",
    "/queries": "QueryOut",
    "/alerts": "AlertOut",
    "/users": "UserOut",
    "/roles": "RoleOut",
    "/service-accounts": "ServiceAccountOut",
}


def _title(name: str) -> str:
    return name.replace("_", " ").title()


def _field(name: str, kind: str) -> tuple[dict[str, Any], bool]:
    optional = kind.endswith("?")
    kind = kind.rstrip("?")
    if kind.startswith("refs:"):
        spec: dict[str, Any] = {
            "type": "array",
            "items": {"$ref": f"#/components/schemas/{kind[5:]}"},
        }
    elif kind.startswith("ref:"):
        spec = {"$ref": f"#/components/schemas/{kind[4:]}"}
    else:
        spec = dict(_KINDS[kind])
    if optional:
        spec = {"anyOf": [spec, {"type": "null"}]}
    return {**spec, "title": _title(name)}, not optional


def _model(name: str, fields: dict[str, str]) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    required: list[str] = []
    for field_name, kind in fields.items():
        properties[field_name], needed = _field(field_name, kind)
        if needed:
            required.append(field_name)
    return {"properties": properties, "type": "object", "required": required, "title": name}


def document(hidden_routes: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The whole document; ``hidden_routes`` are left out (an instance without them)."""
    schemas = {name: _model(name, fields) for name, fields in MODELS.items()}
    schemas["Pagination"] = _model(
        "Pagination",
        {"page": "int", "page_size": "int", "total_items": "int", "total_pages": "int"},
    )
    paths: dict[str, Any] = {
        "/auth/login": {
            "post": {"summary": "Login", "operationId": "login_auth_login_post"},
        }
    }
    for route, model in ROUTES.items():
        if route in hidden_routes:
            continue
        envelope = f"ListResponse_{model}_"
        schemas[envelope] = {
            "properties": {
                "status": {"type": "string", "title": "Status", "default": "success"},
                "data": {
                    "items": {"$ref": f"#/components/schemas/{model}"},
                    "type": "array",
                    "title": "Data",
                },
                "pagination": {"$ref": "#/components/schemas/Pagination"},
            },
            "type": "object",
            "required": ["data", "pagination"],
            "title": envelope,
        }
        operation = "list" + route.replace("/", "_").replace("{", "").replace("}", "").replace(
            "-", "_"
        )
        parameters = [
            {"name": "page", "in": "query", "required": False, "schema": {"type": "integer"}},
            {"name": "page_size", "in": "query", "required": False, "schema": {"type": "integer"}},
        ]
        if "{pipeline_id}" in route:
            parameters.insert(
                0,
                {
                    "name": "pipeline_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                },
            )
        paths[route] = {
            "get": {
                "summary": f"List {route.strip('/').split('/')[-1]}",
                "operationId": f"{operation}_get",
                "parameters": parameters,
                "responses": {
                    "200": {
                        "description": "Successful Response",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": f"#/components/schemas/{envelope}"}
                            }
                        },
                    },
                    "422": {"description": "Validation Error"},
                },
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Datalinx AI", "version": "1.0.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }
