"""The Meltano project and the demo.

- The end-to-end test runs the README's demo command (``scripts/demo.py``: sandbox ->
  Meltano -> DuckDB) as a user would and reads the summary it prints, which the demo takes
  from the DuckDB file itself, not from the log. It needs Meltano in ``.venv-meltano``
  (``make test`` installs it): without it the test fails under ``CI=true`` and skips
  elsewhere. It then reads the DuckDB file: after the second run, the live rows of every
  table the sandbox's change altered are the sandbox's data (rows deleted gone, columns
  added present, no row twice), as the warehouse target (``warehouse/``) honours the
  tap's table versions.
- The definition checks keep ``meltano.yml``, the Hub-style definition in ``plugins/`` and
  the tap's own settings schema in step.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tap_dataplatforms.core.config import coerce_numbers
from tap_dataplatforms.tap import TapDataPlatforms
from tests.reliability import credential_secrets, secret_hits

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest brings tomli on 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "scripts" / "demo.py"
MELTANO = ROOT / ".venv-meltano" / "bin" / "meltano"
MELTANO_YML = ROOT / "meltano.yml"
HUB_DEFINITION = ROOT / "plugins" / "extractors" / "tap-dataplatforms--dataplatforms.yml"
EXPECTED_STREAMS = ("redivis_datasets", "redivis_tables", "redivis_variables")
SUMMARY_LINE = re.compile(r"^\s+([a-z][a-z0-9_]*)\s+(\d+|missing)\s*$")


def _demo_module() -> Any:
    spec = importlib.util.spec_from_file_location("demo", DEMO)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("demo", module)  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def parse_summary(stdout: str) -> dict[str, int]:
    """Rows per table from the demo's summary block (``missing`` counts as 0)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Rows per table in "))
    counts: dict[str, int] = {}
    for line in lines[start + 1 :]:
        match = SUMMARY_LINE.match(line)
        if not match:
            break
        name, rows = match.groups()
        counts[name] = 0 if rows == "missing" else int(rows)
    counts.pop("total", None)
    return counts


def test_parse_summary_reads_counts_and_missing_tables() -> None:
    stdout = (
        "Sandbox stopped.\n\nRows per table in output/demo.duckdb (schema s):\n"
        "  redivis_datasets        165\n  redivis_tables      missing\n"
        "  total                   165\n\nDemo finished in 3.0 s.\n"
    )
    assert parse_summary(stdout) == {"redivis_datasets": 165, "redivis_tables": 0}


def test_demo_skips_the_streams_the_default_sandbox_does_not_serve() -> None:
    """The demo expects no table, and the tap's warning, for each stream whose route the
    default sandbox's Datalinx instance lacks, and rows for every other one."""
    from dataplatforms_sandbox.datalinx import DEFAULT_MISSING_ROUTES

    demo = _demo_module()
    datalinx = demo.PLATFORMS["datalinx"]
    assert set(datalinx.skipped) == {f"datalinx_{r}" for r in DEFAULT_MISSING_ROUTES}
    assert not set(datalinx.skipped) & set(datalinx.streams)
    warning = (
        "WARNING Datalinx: the instance's OpenAPI document has no route for "
        "datalinx_alerts (GET /alerts); not offered"
    )
    assert demo.skipped_problems({}, warning) == []
    assert demo.skipped_problems({"datalinx_alerts": 3}, warning) == [
        "datalinx_alerts: loaded, though the sandbox has no route for it"
    ]
    assert demo.skipped_problems({}, "") == ["datalinx_alerts: skipped without the tap's warning"]


@pytest.mark.e2e
def test_demo_loads_rows_for_every_platform(tmp_path: Path) -> None:
    if not MELTANO.exists():
        message = f"Meltano is not installed at {MELTANO.relative_to(ROOT)} (run `make meltano`)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)

    user_states = meltano_states()
    result = subprocess.run(
        [sys.executable, str(DEMO), "--output", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    log = tmp_path / "demo-meltano.log"
    details = (
        f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        + (f"\n--- meltano log (tail)\n{log.read_text()[-4000:]}" if log.exists() else "")
    )
    assert result.returncode == 0, details
    meltano_log = log.read_text() if log.exists() else ""
    assert secret_hits(result.stdout + result.stderr + meltano_log, credential_secrets()) == []
    counts = parse_summary(result.stdout)
    for stream in EXPECTED_STREAMS:
        assert counts.get(stream, 0) > 0, f"{stream}: no rows\n{details}"
    for name, platform in _demo_module().PLATFORMS.items():
        for stream in platform.streams:
            assert counts.get(stream, 0) > 0, f"{name}: {stream}: no rows\n{details}"
        for stream in platform.skipped:  # a route the sandbox's instance lacks
            assert stream not in counts, f"{name}: {stream}: loaded\n{details}"
    assert "Sandbox stopped." in result.stdout
    assert "Run summary of the tap" in result.stdout
    # Isolation: the demo kept its bookmarks in its own environment and state directory,
    # so the project's own state (what a user's `meltano run` starts from) is exactly what
    # it was: after the demo, a user's first run starts with empty state.
    assert meltano_states() == user_states
    demo_state = [str(p) for p in (tmp_path / "meltano-state").rglob("*")]
    state_id = "demo:tap-dataplatforms-to-target-dataplatforms-duckdb"
    assert any(state_id in p for p in demo_state), demo_state
    assert_second_run_mirrors_the_sandbox(tmp_path / "demo.duckdb", result.stdout)


#: Keyed tables whose rows the sandbox's change deletes or replaces.
CHANGED_KEYED = (
    "dexi_runs",
    "redivis_tables",
    "redivis_variables",
    "reinfer_sources",
    "reinfer_streams",
    "reinfer_labellings",
    "datalinx_pipeline_runs",
    "datalinx_users",
    "datalinx_roles",
)


def duckdb_live(path: Path) -> dict[str, tuple[list[str], list[tuple[str | None, ...]]]]:
    """Every table of the demo's schema: its columns and its live rows (values as text)."""
    import duckdb  # the warehouse target's release (warehouse/ is installed in .venv)

    demo = _demo_module()
    con = duckdb.connect(str(path), read_only=True)
    try:
        columns: dict[str, list[str]] = {}
        for table, column in con.execute(
            "select table_name, column_name from information_schema.columns "
            "where table_schema = ? order by table_name, ordinal_position",
            [demo.TARGET_SCHEMA],
        ).fetchall():
            columns.setdefault(table, []).append(column)
        tables = {}
        for table, names in columns.items():
            select = ", ".join(f'"{n}"::varchar' for n in names)
            rows = con.execute(
                f'select {select} from "{demo.TARGET_SCHEMA}"."{table}" '  # noqa: S608
                "where _sdc_deleted_at is null"
            ).fetchall()
            tables[table] = (names, [tuple(r) for r in rows])
        return tables
    finally:
        con.close()


def assert_second_run_mirrors_the_sandbox(path: Path, stdout: str) -> None:
    """The demo's sandbox data (seed 1, scale 1) changed once, as the demo changes it:
    the live rows of the tables the change altered are that data, each row once. With
    target-duckdb 0.8.0 (which ignores ACTIVATE_VERSION) the deleted rows stayed."""
    from dataplatforms_sandbox import Sandbox
    from tap_dataplatforms.core.naming import slug
    from tests.test_e2e_postgres import expected_keys, key_columns

    sb = Sandbox(seed=1, scale=1)
    sb.change()
    expected = expected_keys(sb)
    tables = duckdb_live(path)

    def column(table: str, name: str) -> list[str | None]:
        names, rows = tables[table]
        return [row[names.index(name)] for row in rows]

    for name in CHANGED_KEYED:
        keys = key_columns(name)
        have = list(zip(*(column(name, k) for k in keys), strict=True))
        assert len(have) == len(set(have)), f"{name}: a key twice"
        want = {tuple(str(v) for v in key) for key in expected[name]}
        assert set(have) == want, (
            f"{name}: missing {sorted(want - set(have))[:3]}, "
            f"not in the source {sorted(set(have) - want)[:3]}"
        )
    for dataset_id, rows in sb.dexi.datasets.items():
        table = f"dexi_dataset_rows__{slug(dataset_id)}"
        assert Counter(column(table, "sku")) == Counter(r["sku"] for r in rows), table
    for name, rows in sb.invision.tables.items():
        table = f"invision_table__{slug(name)}"
        first = next(iter(rows[0]))
        assert Counter(column(table, first)) == Counter(str(r[first]) for r in rows), table
        for added in {c for r in rows for c in r} - {first}:
            assert added in tables[table][0], f"{table}: no column {added}"
    (robot,) = [t for t in tables if t.startswith("dexi_results__") and "discount" in tables[t][0]]
    assert Counter(column(robot, "_execution_id"))  # the new execution's rows are there
    second = stdout[stdout.index("The second run") : stdout.index("Rows per table in ")]
    assert re.search(r"dexi_dataset_rows__\S+: \d+ -> \d+ rows \(\d+ deleted\)", second), second
    assert re.search(r"invision_table__gl_actuals: .*deleted\); columns added: .*Currency", second)
    assert re.search(r"dexi_runs: \d+ -> \d+ rows \(1 deleted\)", second), second


def meltano(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MELTANO_", "TAP_"))}
    result = subprocess.run(
        [str(MELTANO), *args],
        cwd=ROOT,
        env={**env, "MELTANO_CLI_DISABLE_VERSION_CHECK": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return result.stdout


def meltano_states() -> dict[str, str]:
    """Every state in the project's own state backend, as a user's runs see it."""
    ids = [line.strip() for line in meltano("state", "list").splitlines() if line.strip()]
    return {state_id: meltano("state", "get", state_id) for state_id in ids}


# --------------------------------------------------------------------------- definitions

JSON_TYPE_TO_KIND = {
    "string": "string",
    "integer": "integer",
    # Not `decimal`: Meltano 4.4 crashes on a decimal setting read from an environment
    # variable; the tap reads the text as a number (core.config.coerce_numbers).
    "number": "string",
    "boolean": "boolean",
    "array": "array",
    "object": "object",
}


def _meltano_project() -> dict[str, Any]:
    project: dict[str, Any] = yaml.safe_load(MELTANO_YML.read_text())
    return project


def _extractor() -> dict[str, Any]:
    plugins = _meltano_project()["plugins"]["extractors"]
    extractor: dict[str, Any] = next(p for p in plugins if p["name"] == "tap-dataplatforms")
    return extractor


def _tap_settings(dotted_parents: set[str]) -> dict[str, dict[str, Any]]:
    """The tap's settings schema, nested blocks as dotted names (``redivis.token``)."""
    full = copy.deepcopy(TapDataPlatforms.config_jsonschema)
    TapDataPlatforms.append_builtin_config(full)  # the SDK's own settings, as --about lists
    flat: dict[str, dict[str, Any]] = {}
    for name, schema in full["properties"].items():
        if name in dotted_parents:
            for child, child_schema in schema["properties"].items():
                flat[f"{name}.{child}"] = child_schema
        else:
            flat[name] = schema
    return flat


def _expected_kind(schema: dict[str, Any]) -> str:
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else types
    (json_type,) = [t for t in types if t != "null"]
    if json_type == "string" and schema.get("format") == "date-time":
        return "date_iso8601"
    return JSON_TYPE_TO_KIND[json_type]


def test_meltano_yml_declares_every_tap_setting_with_its_kind() -> None:
    settings = {s["name"]: s for s in _extractor()["settings"]}
    parents = {name.split(".")[0] for name in settings if "." in name}
    tap = _tap_settings(parents)
    assert sorted(settings) == sorted(tap)
    for name, schema in tap.items():
        setting = settings[name]
        assert setting["kind"] == _expected_kind(schema), name
        secret = bool(schema.get("secret") or schema.get("writeOnly"))
        assert bool(setting.get("sensitive")) == secret, name
        assert setting.get("label"), name
        assert setting.get("description"), name


def test_meltano_yml_passes_no_platform_setting_the_user_did_not_set() -> None:
    extractor = _extractor()
    assert all("value" not in setting for setting in extractor["settings"])
    assert "config" not in extractor
    platforms = {s["name"].split(".")[0] for s in extractor["settings"] if "." in s["name"]}
    for plugin in _meltano_project()["plugins"]["extractors"]:
        # An inheriting extractor may set shared settings (the partitioned ones set
        # `partition` and `rate_limit_backend`), never a platform's block.
        assert not platforms & set(plugin.get("config") or {}), plugin["name"]


def test_settings_groups_name_declared_settings() -> None:
    extractor = _extractor()
    names = {s["name"] for s in extractor["settings"]}
    groups = extractor["settings_group_validation"]
    assert ["redivis.token"] in groups
    assert all(set(group) <= names for group in groups)


def test_hub_definition_matches_meltano_yml() -> None:
    hub = yaml.safe_load(HUB_DEFINITION.read_text())
    extractor = _extractor()
    for key in ("name", "namespace", "executable", "capabilities", "select", "settings"):
        assert hub[key] == extractor[key], key
    assert hub["settings_group_validation"] == extractor["settings_group_validation"]


#: Meltano Hub's values of ``maintenance_status``.
MAINTENANCE_STATUSES = {"active", "beta", "development", "inactive", "unknown"}


def _about() -> dict[str, Any]:
    """What ``tap-dataplatforms --about --format=json`` prints (the installed executable)."""
    executable = Path(sys.executable).parent / "tap-dataplatforms"
    command = (
        [str(executable)]
        if executable.exists()
        else [sys.executable, "-m", "tap_dataplatforms.tap"]
    )
    result = subprocess.run(
        [*command, "--about", "--format=json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    about: dict[str, Any] = json.loads(result.stdout)
    return about


def test_hub_definition_has_its_links_and_matches_the_taps_about() -> None:
    """The Hub definition says where the tap lives and how it is kept, and declares what
    ``--about`` reports: every capability, every setting (platform blocks as dotted
    names) with a kind that survives an environment variable, secrets sensitive."""
    hub = yaml.safe_load(HUB_DEFINITION.read_text())
    assert hub["maintenance_status"] in MAINTENANCE_STATUSES
    assert hub["docs"] == _extractor()["docs"]
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get("urls", {})
    repository = urls.get("Repository")
    if repository is None:
        # No public location recorded: no invented one; the docs are the README's path.
        assert "repo" not in hub
        assert hub["docs"] == "README.md"
        assert (ROOT / hub["docs"]).is_file()
    else:
        assert hub["repo"] == repository
        assert hub["docs"].startswith(repository)

    about = _about()
    assert sorted(hub["capabilities"]) == sorted(about["capabilities"])
    declared = {s["name"]: s for s in hub["settings"]}
    blocks = {name.split(".")[0] for name in declared if "." in name}
    reported: dict[str, dict[str, Any]] = {}
    for name, schema in about["settings"]["properties"].items():
        if name in blocks:
            for child, child_schema in schema["properties"].items():
                reported[f"{name}.{child}"] = child_schema
        else:
            reported[name] = schema
    assert sorted(declared) == sorted(reported)
    for name, schema in reported.items():
        setting = declared[name]
        # Not `decimal`/`float`: Meltano 4.4 crashes on one read from the environment.
        assert setting["kind"] not in ("decimal", "float"), name
        assert setting["kind"] == _expected_kind(schema), name
        assert bool(setting.get("sensitive")) == bool(schema.get("secret")), name


def test_every_plugin_installs_from_a_pinned_package() -> None:
    """Every loader installs a pinned release, or this repository's own warehouse target
    (``warehouse/``), whose dependencies are pinned in its pyproject.toml."""
    plugins = _meltano_project()["plugins"]
    for loader in plugins["loaders"]:
        if "inherit_from" in loader:  # installed with, and as, its parent
            continue
        assert loader["namespace"], loader["name"]
        assert loader["executable"], loader["name"]
        packages = loader["pip_url"].split()
        if packages[0] == "-e":
            (path,) = packages[1:]
            project = tomllib.loads((ROOT / path / "pyproject.toml").read_text())["project"]
            assert loader["executable"] in project["scripts"], loader["name"]
            packages = project["dependencies"]
        assert all("==" in package for package in packages), loader["name"]
    demo = _demo_module()
    warehouse = next(p for p in plugins["loaders"] if p["name"] == demo.LOADER)
    assert warehouse["pip_url"] == "-e ./warehouse"
    # The registry's target-duckdb ignores ACTIVATE_VERSION: nothing uses it any more.
    assert "target-duckdb" not in {p["name"] for p in plugins["loaders"]}
    jobs = {task for job in _meltano_project()["jobs"] for task in job["tasks"]}
    assert f"tap-dataplatforms {demo.LOADER}" in jobs


def test_number_setting_from_an_environment_variable_reaches_the_tap_as_a_number() -> None:
    if not MELTANO.exists():
        message = f"Meltano is not installed at {MELTANO.relative_to(ROOT)} (run `make meltano`)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MELTANO_", "TAP_"))}
    result = subprocess.run(
        [str(MELTANO), "config", "print", "tap-dataplatforms"],
        cwd=ROOT,
        env={
            **env,
            "MELTANO_CLI_DISABLE_VERSION_CHECK": "1",
            "TAP_DATAPLATFORMS_DEXI_MAX_REQUESTS_PER_SECOND": "2.5",
            "TAP_DATAPLATFORMS_MAX_CONCURRENCY": "3",
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]  # no "Decimal is not JSON serializable"
    config = json.loads(result.stdout[result.stdout.index("{") :])
    assert config["dexi"]["max_requests_per_second"] == "2.5"  # text, as Meltano passes it
    coerce_numbers(config, TapDataPlatforms.config_jsonschema)  # what the tap does first
    assert config["dexi"]["max_requests_per_second"] == 2.5
    assert config["max_concurrency"] == 3
    config["dexi"].update(account_id="a", api_key="k")
    tap = TapDataPlatforms.config_jsonschema
    assert not list(jsonschema.Draft7Validator(tap).iter_errors(config))


def _bare_project(tmp_path: Path) -> Path:
    """A Meltano project with the shipped extractor definition, run from this checkout's
    environment (no install), and no credentials anywhere."""
    extractor = copy.deepcopy(_extractor())
    extractor.pop("pip_url")
    extractor["executable"] = str(Path(sys.executable).parent / "tap-dataplatforms")
    project = {
        "version": 1,
        "default_environment": "dev",
        "environments": [{"name": "dev"}],
        "send_anonymous_usage_stats": False,
        "plugins": {"extractors": [extractor]},
    }
    (tmp_path / "meltano.yml").write_text(yaml.safe_dump(project))
    return tmp_path


def test_meltano_select_list_needs_no_credentials(tmp_path: Path) -> None:
    """`meltano select --list` on a fresh project lists every platform's static streams,
    with the definition's default selection: all but the side-effect stream."""
    if not MELTANO.exists():
        message = f"Meltano is not installed at {MELTANO.relative_to(ROOT)} (run `make meltano`)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    project = _bare_project(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MELTANO_", "TAP_"))}
    result = subprocess.run(
        [str(MELTANO), "select", "tap-dataplatforms", "--list", "--all"],
        cwd=project,
        env={**env, "MELTANO_CLI_DISABLE_VERSION_CHECK": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    listed: dict[str, set[str]] = {}
    for line in result.stdout.splitlines():
        match = re.match(r"\s*\[(selected|automatic|excluded)\s*\]\s+([a-z_]+)\.", line)
        if match:
            listed.setdefault(match.group(2), set()).add(match.group(1))
    static = {
        "redivis_datasets",
        "redivis_tables",
        "dexi_runs",
        "dexi_executions",
        "reinfer_comments",
        "invision_execution_log",
        "invision_dataflow_runs",
        "datalinx_workspaces",
    }
    assert static <= set(listed), result.stdout[-3000:]
    assert listed["invision_dataflow_runs"] == {"excluded"}
    for stream in static - {"invision_dataflow_runs"}:
        assert "selected" in listed[stream], stream


def test_sync_without_any_platform_is_a_configuration_error(tmp_path: Path) -> None:
    """Discovery lists streams without a platform; a sync without one is exit code 2."""
    config = tmp_path / "config.json"
    config.write_text("{}")
    tap = Path(sys.executable).parent / "tap-dataplatforms"
    result = subprocess.run(
        [str(tap), "--config", str(config)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "no platform configured" in result.stderr
    assert result.stdout == ""
