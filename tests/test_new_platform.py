"""A sixth platform is one folder and one line in ``tap.py``.

A toy platform is written as a folder of the package (in a temporary directory added to
the package's path), and ``tap.py`` is loaded with exactly the edit that adds it: the
folder imported and its ``PLATFORM`` added to ``PLATFORMS``. Nothing else in the product
changes, and the new tap offers the toy's settings, discovers its stream and syncs it
against requests-mock, through the shared request path (budget, auth check, paging).
"""

from __future__ import annotations

import difflib
import importlib.util
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import requests_mock as rm

import tap_dataplatforms
from tap_dataplatforms import tap as tap_module
from tap_dataplatforms.core.errors import ConfigError, PlatformAuthError
from tests.helpers import run_sync

BASE = "https://api.toy.test/v1"

#: The whole platform: its settings, its stream (path, paginator, schema, auth) and its
#: declaration, as a folder of the package would hold them.
TOY = '''
"""Toy: items behind a bearer token, paged by a token in the body."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from singer_sdk import typing as th
from singer_sdk.authenticators import BearerTokenAuthenticator

from tap_dataplatforms.core.config import PlatformSpec, budget_setting, url_setting
from tap_dataplatforms.core.http import PlatformStream, connection_check
from tap_dataplatforms.core.settings import PlatformSettings

SETTINGS = (
    url_setting("https://api.toy.test/v1", "https://api.toy.test/v1"),
    th.Property("token", th.StringType, secret=True, description="API token (Bearer)."),
    budget_setting(50, "requests per second"),
)


@dataclass(frozen=True)
class ToySettings(PlatformSettings):
    token: str



class ItemsStream(PlatformStream):
    platform = "toy"
    platform_title = "Toy"
    name = "toy_items"
    path = "/items"
    primary_keys = ("id",)
    records_jsonpath = "$.items[*]"
    next_page_token_jsonpath = "$.next_page"
    schema = th.PropertiesList(
        th.Property("id", th.IntegerType), th.Property("name", th.StringType)
    ).to_dict()

    @cached_property
    def authenticator(self) -> BearerTokenAuthenticator:
        settings = self.runtime.settings.of(ToySettings, self.platform)
        return BearerTokenAuthenticator(token=settings.token)

    def get_url_params(self, context: Any, next_page_token: Any) -> dict[str, Any]:
        return {"page": next_page_token} if next_page_token else {}


PLATFORM = PlatformSpec(
    key="toy",
    title="Toy",
    settings=SETTINGS,
    settings_class=ToySettings,
    credential_groups=(("token",),),
    streams=(ItemsStream,),
    check=connection_check("toy_items", "/items", {"limit": 1}),
)
'''

IMPORT_LINE = "from tap_dataplatforms import datalinx, dexi, invision, redivis, reinfer\n"
LAST_ENTRY = "    datalinx.PLATFORM,\n)\n"


def with_toy(source: str) -> str:
    """``tap.py`` with the sixth platform added as a new one would be."""
    assert IMPORT_LINE in source
    assert LAST_ENTRY in source
    source = source.replace(IMPORT_LINE, IMPORT_LINE.replace("reinfer", "reinfer, toy"))
    return source.replace(LAST_ENTRY, "    datalinx.PLATFORM,\n    toy.PLATFORM,\n)\n")


@pytest.fixture
def six(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The tap module of a product with the toy platform added."""
    folder = tmp_path / "tap_dataplatforms" / "toy"
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text(textwrap.dedent(TOY).lstrip())
    monkeypatch.setattr(
        tap_dataplatforms, "__path__", [*tap_dataplatforms.__path__, str(folder.parent)]
    )
    original = Path(tap_module.__file__).read_text(encoding="utf-8")
    edited = with_toy(original)
    changed = [
        line
        for line in difflib.unified_diff(original.splitlines(), edited.splitlines(), n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    # The import line names the folder, and one line registers it: nothing else.
    assert len([line for line in changed if line.startswith("+")]) == 2, changed
    assert len([line for line in changed if line.startswith("-")]) == 1, changed
    spec = importlib.util.spec_from_loader("six_platform_tap", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    module.__file__ = str(tmp_path / "tap.py")
    sys.modules[spec.name] = module
    try:
        exec(compile(edited, module.__file__, "exec"), module.__dict__)  # noqa: S102
        yield module
    finally:
        sys.modules.pop(spec.name, None)
        sys.modules.pop("tap_dataplatforms.toy", None)


def items_pages(requests_mock: rm.Mocker) -> None:
    def answer(request: Any, context: Any) -> dict[str, Any]:
        assert request.headers["Authorization"] == "Bearer tok-toy-123456"
        if request.qs.get("limit") == ["1"]:  # the connection check
            return {"items": [{"id": 1, "name": "one"}]}
        if request.qs.get("page") == ["2"]:
            return {"items": [{"id": 3, "name": "three"}], "next_page": None}
        return {"items": [{"id": 1, "name": "one"}, {"id": 2, "name": "two"}], "next_page": 2}

    requests_mock.get(BASE + "/items", json=answer)


CONFIG = {"toy": {"token": "tok-toy-123456"}}


def test_the_sixth_platform_has_its_settings_block(six: ModuleType) -> None:
    tap_class = six.TapDataPlatforms
    toy = tap_class.config_jsonschema["properties"]["toy"]
    assert set(toy["properties"]) == {"api_url", "token", "max_requests_per_second"}
    assert toy["properties"]["token"]["secret"] is True
    assert [spec.key for spec in six.PLATFORMS][-1] == "toy"
    with pytest.raises(ConfigError, match=r"missing setting toy\.token: Toy needs it"):
        tap_class(config={"toy": {}}, parse_env_config=False)


def test_the_sixth_platform_is_discovered_and_synced(
    six: ModuleType, requests_mock: rm.Mocker
) -> None:
    items_pages(requests_mock)
    tap = six.TapDataPlatforms(config=CONFIG, parse_env_config=False)
    catalog = tap.catalog_dict
    assert [entry["tap_stream_id"] for entry in catalog["streams"]] == ["toy_items"]
    out = run_sync(tap)
    assert [r["id"] for r in out.records["toy_items"]] == [1, 2, 3]
    assert out.schemas["toy_items"]["properties"]["name"]
    checks = [r for r in requests_mock.request_history if r.qs.get("limit") == ["1"]]
    assert len(checks) == 1  # the connection check ran before the records
    assert tap.runtime.counters["toy.requests"] == 3
    assert out.states  # and the run ended on a STATE, as every platform's does


def test_the_sixth_platform_fails_fast_on_a_refused_token(
    six: ModuleType, requests_mock: rm.Mocker
) -> None:
    requests_mock.get(BASE + "/items", status_code=401, json={"error": "bad token"})
    tap = six.TapDataPlatforms(config=CONFIG, parse_env_config=False)
    with pytest.raises(PlatformAuthError, match="Toy"):
        run_sync(tap)
