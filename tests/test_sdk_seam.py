"""The one seam to singer-sdk internals (core/sdk.py) and its contract with the SDK.

- No module of the tap but core/sdk.py imports a private singer-sdk module or name, or
  names (calls, reads, overrides) a private attribute of the SDK classes the tap builds
  on. The private names are read from the installed SDK, not listed here.
- Every private name core/sdk.py relies on (``PRIVATE_USES``) still exists in the
  installed SDK, takes the parameters the seam passes, is still called where the seam's
  overrides expect it, and each override keeps the SDK method's parameters: an SDK
  release that renames or reshapes one fails here instead of changing a sync silently.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from singer_sdk import Stream, Tap
from singer_sdk.plugin_base import PluginBase
from singer_sdk.streams import RESTStream

import tap_dataplatforms
from tap_dataplatforms.core import sdk

PACKAGE = Path(tap_dataplatforms.__file__).parent
SEAM = PACKAGE / "core" / "sdk.py"


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _sdk_class(cls: type) -> bool:
    return cls.__module__.split(".")[0] == "singer_sdk"


def _private_names_of(cls: type) -> set[str]:
    """The private attributes of an SDK class: its members and its ``self._x``."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if not _sdk_class(klass):
            continue
        names |= {name for name in vars(klass) if _private(name)}
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        for node in ast.walk(ast.parse(source)):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in {"self", "cls"}
                and _private(node.attr)
            ):
                names.add(node.attr)
    return names - {"_abc_impl", "_is_protocol"}


def _tap_modules() -> Iterator[Any]:
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="tap_dataplatforms."):
        yield importlib.import_module(info.name)


def _sdk_bases() -> set[type]:
    """Stream, RESTStream and Tap, and every SDK class a class of the tap derives from."""
    bases: set[type] = {Stream, RESTStream, Tap}
    for module in _tap_modules():
        for value in vars(module).values():
            if isinstance(value, type) and value.__module__.startswith("tap_dataplatforms"):
                bases |= {klass for klass in value.__mro__ if _sdk_class(klass)}
    return bases


@pytest.fixture(scope="module")
def sdk_private_names() -> frozenset[str]:
    names: set[str] = set()
    for cls in _sdk_bases():
        names |= _private_names_of(cls)
    assert {"_request", "_sync_records", "_tap", "_write_state_message"} <= names
    return frozenset(names)


def _derives_from_sdk(module: str, class_name: str) -> bool:
    try:
        cls = getattr(importlib.import_module(module), class_name, None)
    except ImportError:
        return False
    return isinstance(cls, type) and any(_sdk_class(k) for k in cls.__mro__)


def private_sdk_uses(source: str, module: str, names: frozenset[str]) -> list[str]:
    """Where ``source`` names a private singer-sdk module, name or attribute."""
    found: list[str] = []
    tree = ast.parse(source)

    def visit(node: ast.AST, owner: ast.ClassDef | None) -> None:
        here = f"{module}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("singer_sdk"):
            parts = [*(node.module or "").split("."), *(a.name for a in node.names)]
            if any(_private(part) for part in parts):
                found.append(f"{here} imports from {node.module}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "singer_sdk" and any(_private(p) for p in parts):
                    found.append(f"{here} imports {alias.name}")
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in names:
            if owner is not None:
                found.append(f"{here} overrides {node.name}")
        elif isinstance(node, ast.Assign | ast.AnnAssign) and owner is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name) and target.id in names:
                    found.append(f"{here} sets class attribute {target.id}")
        elif isinstance(node, ast.Attribute) and node.attr in names:
            if not _own_attribute(node, owner, module):
                found.append(f"{here} uses .{node.attr}")
        elif isinstance(node, ast.Constant) and node.value in names:
            found.append(f"{here} names {node.value!r}")
        for child in ast.iter_child_nodes(node):
            visit(child, node if isinstance(node, ast.ClassDef) else owner)

    visit(tree, None)
    return found


def _own_attribute(node: ast.Attribute, owner: ast.ClassDef | None, module: str) -> bool:
    """``self._x`` in a class that is no SDK class and sets ``self._x`` itself (a
    rate-limiter store's ``_state``, a read-ahead's ``_streams``): not the SDK's."""
    if owner is None or not (isinstance(node.value, ast.Name) and node.value.id == "self"):
        return False
    sets_it = any(
        isinstance(sub, ast.Attribute)
        and isinstance(sub.ctx, ast.Store)
        and isinstance(sub.value, ast.Name)
        and sub.value.id == "self"
        and sub.attr == node.attr
        for sub in ast.walk(owner)
    )
    return sets_it and not _derives_from_sdk(module, owner.name)


def _module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = [p for p in relative.parts if p != "__init__"]
    return ".".join(parts)


def test_only_the_seam_names_private_sdk_internals(sdk_private_names: frozenset[str]) -> None:
    found: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == SEAM:
            continue
        found += private_sdk_uses(path.read_text(), _module_name(path), sdk_private_names)
    assert found == []
    # ... and the seam does use them (the scan sees what it is meant to see).
    in_seam = private_sdk_uses(SEAM.read_text(), "tap_dataplatforms.core.sdk", sdk_private_names)
    assert any("overrides _request" in use for use in in_seam)


def test_the_scan_finds_each_kind_of_private_use(sdk_private_names: frozenset[str]) -> None:
    source = textwrap.dedent(
        """
        from singer_sdk.helpers._state import reset_state_progress_markers
        import singer_sdk.helpers._util
        from singer_sdk.streams import RESTStream

        class Mixin:
            _LOG_REQUEST_METRICS = False

            def _write_state_message(self):
                super()._write_state_message()

        class Other:
            def __init__(self, stream):
                self._state = {}
                self.tap = stream._tap
                getattr(stream, "_stream_version")

            def read(self):
                return self._state
        """
    )
    found = private_sdk_uses(source, "not_a_module", sdk_private_names)
    kinds = [use.split(" ", 1)[1] for use in found]
    assert kinds == [
        "imports from singer_sdk.helpers._state",
        "imports singer_sdk.helpers._util",
        "sets class attribute _LOG_REQUEST_METRICS",
        "overrides _write_state_message",
        "uses ._write_state_message",
        "uses ._tap",
        "names '_stream_version'",
    ]


# -- the contract with the installed SDK -------------------------------------------------


def _resolve(where: str) -> Any:
    try:
        return importlib.import_module(where)
    except ImportError:
        module, _, name = where.rpartition(".")
        return getattr(importlib.import_module(module), name)


def _instance_attributes(cls: type) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        if not _sdk_class(klass):
            continue
        source = textwrap.dedent(inspect.getsource(klass))
        for node in ast.walk(ast.parse(source)):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.ctx, ast.Store)
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
            ):
                names.add(node.attr)
    return names


def contract_problems(owner: Any, name: str, passed: tuple[str, ...] | None) -> list[str]:
    """What keeps the seam's use of ``owner.<name>`` (with the parameters it passes by
    name; ``None`` for an attribute) from working against the installed SDK."""
    if passed is None:  # an attribute: a class attribute or one the SDK sets on self
        found = hasattr(owner, name) or name in _instance_attributes(owner)
        return [] if found else [f"{name} is gone"]
    target = getattr(owner, name, None)
    if target is None:
        return [f"{name} is gone"]
    parameters = inspect.signature(target).parameters
    accepted = {n for n in parameters if n not in {"self", "cls"}}
    required = {
        n
        for n, p in parameters.items()
        if n not in {"self", "cls"}
        and p.default is inspect.Parameter.empty
        and p.kind not in {inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD}
    }
    problems = [f"{name} no longer takes {n}" for n in sorted(set(passed) - accepted)]
    problems += [f"{name} now requires {n}" for n in sorted(required - set(passed))]
    return problems


@pytest.mark.parametrize(
    ("where", "name", "passed"), sdk.PRIVATE_USES, ids=[u[1] for u in sdk.PRIVATE_USES]
)
def test_each_private_use_still_exists_with_its_parameters(
    where: str, name: str, passed: tuple[str, ...] | None
) -> None:
    assert contract_problems(_resolve(where), name, passed) == []


def test_the_contract_fails_on_a_renamed_or_reshaped_method() -> None:
    class NextRelease:  # an SDK release that renamed one method and reshaped two
        def _send_request(self, prepared_request: Any, context: Any) -> Any: ...

        def _prepare_request(self, *, context: Any, page: Any, extra: Any) -> Any: ...

        def _sync_records(self, partition: Any = None) -> Any: ...

    uses = {name: passed for _, name, passed in sdk.PRIVATE_USES}
    assert contract_problems(NextRelease, "_request", uses["_request"]) == ["_request is gone"]
    assert contract_problems(NextRelease, "_prepare_request", uses["_prepare_request"]) == [
        "_prepare_request now requires extra"
    ]
    assert contract_problems(NextRelease, "_sync_records", uses["_sync_records"]) == [
        "_sync_records no longer takes context",
        "_sync_records no longer takes write_messages",
    ]
    assert contract_problems(NextRelease, "_stream_version", None) == ["_stream_version is gone"]


def test_private_uses_lists_every_private_name_of_the_seam(
    sdk_private_names: frozenset[str],
) -> None:
    listed = {name for _, name, _ in sdk.PRIVATE_USES}
    tree = ast.parse(SEAM.read_text())
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in sdk_private_names
    }
    used |= {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name in sdk_private_names
    }
    used |= {
        target.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name) and target.id in sdk_private_names
    }
    used |= {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        and (node.module or "").startswith("singer_sdk")
        and any(_private(part) for part in (node.module or "").split("."))
        for alias in node.names
    }
    assert used <= listed, f"used in core/sdk.py, missing from PRIVATE_USES: {used - listed}"


#: Each private SDK method the seam overrides, and the SDK method that must still call it
#: for the override to take effect.
CALLED_FROM = {
    (RESTStream, "_request"): (RESTStream, "request_records"),
    (Stream, "_sync_records"): (Stream, "sync"),
    (Stream, "_sync_children"): (Stream, "_process_record"),
    (Stream, "_write_record_message"): (Stream, "_sync_records"),
    (Stream, "_write_schema_message"): (Stream, "sync"),
    (Stream, "_write_state_message"): (Stream, "_sync_records"),
    (PluginBase, "_validate_config"): (PluginBase, "__init__"),
}


@pytest.mark.parametrize(("overridden", "caller"), CALLED_FROM.items(), ids=lambda v: str(v))
def test_each_override_is_still_called_by_the_sdk(
    overridden: tuple[type, str], caller: tuple[type, str]
) -> None:
    source = textwrap.dedent(inspect.getsource(getattr(*caller)))
    called = {
        node.attr
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
    }
    assert overridden[1] in called, (
        f"{caller[0].__name__}.{caller[1]} no longer calls {overridden[1]}"
    )


def test_each_override_keeps_the_sdk_parameters() -> None:
    overrides = {
        (seam_cls, name)
        for seam_cls in (sdk.SDKStream, sdk.SDKTap)
        for name, value in vars(seam_cls).items()
        if _private(name) and callable(value)
    }
    assert {name for _, name in overrides} == {name for _, name in CALLED_FROM}
    for seam_cls, name in sorted(overrides, key=lambda o: o[1]):
        theirs = inspect.signature(getattr(seam_cls.__mro__[1], name)).parameters
        ours = inspect.signature(getattr(seam_cls, name)).parameters
        assert [(n, p.kind) for n, p in theirs.items()] == [(n, p.kind) for n, p in ours.items()], (
            f"{name}: the SDK's parameters changed"
        )
