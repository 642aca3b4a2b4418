"""A Datalinx instance's OpenAPI document (``/api/openapi.json``) read at discovery.

The document says which list routes the instance has and what each resource's objects
hold. It is an OpenAPI 3 document of the kind FastAPI generates: resources under
``components/schemas`` referenced with ``$ref``, optional fields as ``anyOf`` with
``{"type": "null"}`` (3.1) or ``nullable: true`` (3.0), lists answered in the documented
envelope ``{status, data: [Item], pagination}``. What it says is turned into the JSON
Schema (Draft 7) a Singer SCHEMA carries: references resolved, ``null`` folded into the
type, every object open to more properties.
"""

from __future__ import annotations

import re
from typing import Any

#: How deep references may nest before a schema is taken as "any value" (cycles).
MAX_DEPTH = 12
_PARAMETER = re.compile(r"\{[^}]*\}")
_KEPT = ("format", "description")


def route_key(path: str) -> str:
    """A route with its parameters' names left out (``/pipelines/{}/runs``)."""
    return _PARAMETER.sub("{}", path.rstrip("/") or "/")


class OpenApiDocument:
    """The parts of an instance's OpenAPI document that discovery needs."""

    def __init__(self, document: dict[str, Any]) -> None:
        if not isinstance(document.get("paths"), dict):
            raise ValueError("no paths")
        self.document = document
        self.routes = {
            route_key(path): item
            for path, item in document["paths"].items()
            if isinstance(path, str) and isinstance(item, dict)
        }

    def has_list_route(self, path: str) -> bool:
        item = self.routes.get(route_key(path))
        return isinstance(item, dict) and isinstance(item.get("get"), dict)

    def item_schema(self, path: str) -> dict[str, Any] | None:
        """The JSON Schema of one object of the list that ``GET path`` answers (inside the
        envelope's ``data``, or a bare array); ``None`` when the document does not say."""
        item = self.routes.get(route_key(path)) or {}
        answer = (((item.get("get") or {}).get("responses") or {}).get("200")) or {}
        content = (answer.get("content") or {}).get("application/json") or {}
        body = self._resolve(content.get("schema"), 0)
        if body is None:
            return None
        listed: Any = body
        if _has_type(body, "object"):
            listed = self._resolve(((body.get("properties") or {}).get("data")), 0)
        if not isinstance(listed, dict) or not _has_type(listed, "array"):
            return None
        element = self._resolve(listed.get("items"), 0)
        if element is None or not isinstance(element.get("properties"), dict):
            return None
        return self.json_schema(element)

    # -- conversion ------------------------------------------------------------------------

    def _resolve(self, node: Any, depth: int) -> dict[str, Any] | None:
        """``node`` with any ``$ref`` (and a lone ``allOf`` wrapper) followed."""
        while isinstance(node, dict) and depth <= MAX_DEPTH:
            if "$ref" in node:
                node = self._lookup(str(node["$ref"]))
            elif isinstance(node.get("allOf"), list) and len(node["allOf"]) == 1:
                node = node["allOf"][0]
            else:
                return node
            depth += 1
        return None

    def _lookup(self, ref: str) -> Any:
        if not ref.startswith("#/"):
            return None  # a reference to another document: not followed
        node: Any = self.document
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    def json_schema(self, node: Any, depth: int = 0) -> dict[str, Any]:
        """The Draft 7 form of an OpenAPI schema object; ``{}`` (any value) for what cannot
        be read."""
        resolved = self._resolve(node, depth)
        if resolved is None or depth > MAX_DEPTH:
            return {}
        options = resolved.get("anyOf") or resolved.get("oneOf")
        if isinstance(options, list):
            return self._union([self.json_schema(o, depth + 1) for o in options])
        declared = resolved.get("type")
        if isinstance(declared, str):
            types = [declared]
        elif isinstance(declared, list):
            types = [t for t in declared if isinstance(t, str)]
        elif isinstance(resolved.get("properties"), dict):
            types = ["object"]
        else:
            return {}  # no type: any value
        if resolved.get("nullable") is True and "null" not in types:
            types.append("null")
        out: dict[str, Any] = {"type": types}
        for key in _KEPT:
            if isinstance(resolved.get(key), str):
                out[key] = resolved[key]
        if "object" in types:
            properties = resolved.get("properties")
            if isinstance(properties, dict):
                out["properties"] = {
                    str(name): self.json_schema(sub, depth + 1) for name, sub in properties.items()
                }
            out["additionalProperties"] = True
        if "array" in types:
            out["items"] = self.json_schema(resolved.get("items"), depth + 1)
        return out

    @staticmethod
    def _union(options: list[dict[str, Any]]) -> dict[str, Any]:
        """``anyOf``: one type list when the options are plain types (``X | None``
        becomes X's type plus ``null``), else the options as they are."""
        if any(not option for option in options):
            return {}  # one option is any value: so is the whole
        plain = all(set(option) <= {"type", "format", "description"} for option in options)
        formats = {option.get("format") for option in options if option.get("type") != ["null"]}
        if plain and len(formats) <= 1:
            types: list[str] = []
            for option in options:
                types += [t for t in option["type"] if t not in types]
            out: dict[str, Any] = {"type": types}
            if formats and None not in formats:
                out["format"] = formats.pop()
            return out
        non_null = [option for option in options if option.get("type") != ["null"]]
        if len(non_null) == 1 and isinstance(non_null[0].get("type"), list):
            only = dict(non_null[0])  # an object or a list, or nothing
            only["type"] = [*only["type"], "null"] if "null" not in only["type"] else only["type"]
            return only
        return {"anyOf": options}


def _has_type(schema: dict[str, Any], kind: str) -> bool:
    declared = schema.get("type")
    if declared is None:
        return kind == "object" and isinstance(schema.get("properties"), dict)
    return declared == kind or (isinstance(declared, list) and kind in declared)
