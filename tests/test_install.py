"""A plain install runs every stream; the one optional backend says which extra it needs."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import PackageNotFoundError, packages_distributions, requires
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest brings tomli on 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tap_dataplatforms"
#: Imports a plain install may lack: each is guarded and names its extra when missing.
OPTIONAL = {"redis": "redis"}


def _requirement_name(text: str) -> str:
    name = re.split(r"[\s\[<>=~!;]", text.strip(), maxsplit=1)[0]
    return name.lower().replace("_", "-")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _closure(names: set[str]) -> set[str]:
    """The distributions ``names`` bring along (requirements without an extra marker)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            reqs = requires(name) or []
        except PackageNotFoundError:
            continue
        todo += [_requirement_name(r) for r in reqs if "extra ==" not in r]
    return seen


def _third_party_imports() -> set[str]:
    stdlib = set(sys.stdlib_module_names)
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top not in stdlib and top != "tap_dataplatforms":
                    found.add(top)
    return found


def test_every_import_of_the_package_is_a_core_dependency() -> None:
    """Everything any stream (and the sandbox) imports comes with ``pip install .``:
    Redivis rows need pyarrow, large bodies need ijson; only the guarded redis client is
    left to its extra."""
    direct = {_requirement_name(r) for r in _pyproject()["project"]["dependencies"]}
    core = _closure(direct)
    owners = packages_distributions()
    missing = {}
    for module in sorted(_third_party_imports()):
        if module in OPTIONAL:
            continue
        dists = {d.lower().replace("_", "-") for d in owners.get(module, [module])}
        if not dists & core:
            missing[module] = sorted(dists)
    assert not missing, f"imported but not a core dependency: {missing}"
    assert {"pyarrow", "ijson"} <= direct


def test_extras_are_only_optional_backends_and_tools() -> None:
    extras = _pyproject()["project"]["optional-dependencies"]
    assert set(extras) <= {"redis", "dev", "redivis"}
    assert extras.get("redivis", []) == []  # a compatibility alias that adds nothing
    assert [_requirement_name(r) for r in extras["redis"]] == ["redis"]


def test_ci_installs_what_the_readme_tells_a_user() -> None:
    readme = (ROOT / "README.md").read_text()
    assert ".venv/bin/pip install -e .  " in readme
    makefile = (ROOT / "Makefile").read_text()
    installs = re.findall(r"pip install -q -e '([^']*)'", makefile)
    assert installs == [".[dev]"], installs
    demo = (ROOT / "scripts" / "demo.py").read_text()
    assert '".[dev]"' in demo
    assert "redivis]" not in makefile + demo
    hub = ROOT / "plugins" / "extractors" / "tap-dataplatforms--dataplatforms.yml"
    for path in (ROOT / "meltano.yml", hub):
        text = path.read_text()
        pip_urls = re.findall(r"^\s*pip_url:\s*(.*tap-dataplatforms.*|-e \..*)$", text, re.M)
        assert pip_urls, path
        for url in pip_urls:
            assert "redivis" not in url, (path, url)


def test_redis_backend_without_its_client_is_one_line_naming_the_extra(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "rate_limit_backend": "redis://127.0.0.1:6379/0",
                "redivis": {"token": "x", "organizations": ["demo"]},
            }
        )
    )
    # The client made unimportable, as in an install without the extra.
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "from tap_dataplatforms.tap import main\n"
        f"sys.argv = ['tap-dataplatforms', '--config', {str(config)!r}]\n"
        "main()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "tap-dataplatforms[redis]" in line]
    assert len(lines) == 1, result.stderr
    assert result.stdout == ""


def test_the_wheel_holds_the_tap_and_no_emulator(tmp_path: Path) -> None:
    """``pip install tap-dataplatforms`` installs the tap only: the emulator of the five
    APIs is its own distribution (``sandbox/``), installed beside it for tests and demo."""
    # Built from a copy of what the sdist carries, so that setuptools' build/ stays out of
    # the working tree.
    source = tmp_path / "source"
    shutil.copytree(PACKAGE, source / PACKAGE.name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    out = tmp_path / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = out.glob("tap_dataplatforms-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = archive.read(entry_points).decode()
    tops = {name.split("/")[0] for name in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"tap_dataplatforms"}, tops
    assert not [n for n in names if "sandbox" in n.lower()], names
    assert not [n for n in names if "warehouse" in n.lower()], names
    assert "tap-dataplatforms = tap_dataplatforms.tap:main" in scripts
    assert "sandbox" not in scripts
    assert "target-" not in scripts
    assert len([n for n in names if n.endswith(".py")]) > 20  # the tap itself is there


def test_the_emulator_and_the_tap_do_not_import_each_other() -> None:
    """The sandbox models the platforms' APIs, not the tap: neither package imports the
    other (the tests, the demo and the benchmark bring them together); nor does the demo's
    warehouse target import either."""

    def imports(folder: Path) -> set[str]:
        found: set[str] = set()
        for path in folder.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    found |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
        return found

    sandbox = ROOT / "sandbox" / "dataplatforms_sandbox"
    assert (sandbox / "server.py").exists()
    assert "tap_dataplatforms" not in imports(sandbox)
    assert "dataplatforms_sandbox" not in imports(PACKAGE)
    # The demo's warehouse target (warehouse/) reads Singer messages only: it imports
    # neither, and neither imports it.
    warehouse = ROOT / "warehouse" / "dataplatforms_warehouse"
    assert (warehouse / "target.py").exists()
    assert not {"tap_dataplatforms", "dataplatforms_sandbox"} & imports(warehouse)
    assert "dataplatforms_warehouse" not in imports(PACKAGE) | imports(sandbox)
