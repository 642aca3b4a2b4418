"""Side-by-side benchmark: tap-dataplatforms against the raw floor, tap-rest-api-msdk and dlt.

One run starts the sandbox (``tap-dataplatforms-sandbox``, a child process) with
benchmark-sized data (``--bulk``), then reads the same endpoints with every tool in turn,
each in its own process:

- ``ours``  - ``tap-dataplatforms`` with a catalog that selects only the measured stream;
- ``floor`` - ``bench/floor.py``: requests + orjson, one JSON line per record, nothing else;
- ``msdk``  - ``tap-rest-api-msdk`` configured on the same endpoints (where it can read them);
- ``dlt``   - dlt's ``rest_api`` source, ``pipeline.extract`` only (``bench/dlt_extract.py``).

For each run it records wall seconds, records per second, CPU seconds (user + system of that
process, from ``wait4``) and peak RSS (``ru_maxrss``), and checks the record count against
the sandbox's own (a run with a wrong count is marked and fails the benchmark). The Singer
tools' stdout is a pipe that this process counts in large chunks (no parsing).

A second part adds server latency to every request (``--latency-ms``, default 50) and
compares the tap with ``max_concurrency=1`` against its default, with the sandbox limits set
to the tap's budgets, counting 429 answers in the sandbox's request log. For Redivis it
reads the metadata streams (datasets -> tables -> variables of the ``demo`` organization,
grown with ``--bulk redivis=ROWS/DATASETS``): many small requests, where latency counts;
once at that latency and once at ``REDIVIS_FAR_LATENCY_MS``.

    .venv-bench/tools/bin/python bench/compare.py            # full: 1M rows (make bench)
    .venv-bench/tools/bin/python bench/compare.py --quick    # 100k rows

Writes ``bench/results.md`` and ``bench/results.png``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform as host
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
TAP = ROOT / ".venv/bin/tap-dataplatforms"
SANDBOX = ROOT / ".venv/bin/tap-dataplatforms-sandbox"
TOOLS_PY = ROOT / ".venv-bench/tools/bin/python"
DLT_PY = ROOT / ".venv-bench/dlt/bin/python"
MSDK = ROOT / ".venv-bench/msdk/bin/tap-rest-api-msdk"

# The sandbox's fixed test credentials (a stdlib-only module, importable from any venv).
sys.path.insert(0, str(ROOT / "sandbox"))
from dataplatforms_sandbox.credentials import CREDENTIALS  # noqa: E402

DEXI_ACCOUNT = CREDENTIALS["dexi"]["account_id"]
DEXI_KEY = CREDENTIALS["dexi"]["api_key"]
REINFER_TOKEN = CREDENTIALS["reinfer"]["token"]
REDIVIS_TOKEN = CREDENTIALS["redivis"]["token"]
DEXI_HEADERS = ["input_url", "title", "price", "qty", "in_stock", "image", "error"]
PLATFORMS = ("dexi", "reinfer", "redivis")
TOOLS = ("ours", "floor", "msdk", "dlt")
REDIVIS_METADATA = ("redivis_datasets", "redivis_tables", "redivis_variables")
STREAMS = {
    "dexi": "dexi_results__bulk_catalog_crawl",
    "reinfer": "reinfer_comments",
    "redivis": None,  # named after the table, known once the sandbox is up
}
UNLIMITED = 10_000_000  # requests a second: "off" for a fixed-window limit or a budget
CHUNK = 1 << 20


# --------------------------------------------------------------------------- sandbox


class Sandbox:
    """``tap-dataplatforms-sandbox`` in a child process, so its CPU is nobody's."""

    def __init__(self, bulk: dict[str, str], limits: dict[str, int], latency_ms: float) -> None:
        args = [str(SANDBOX), "--port", "0", "--seed", "1", "--latency-ms", str(latency_ms)]
        # No passing HTML or empty answers: the floor and the other tools do not retry them,
        # and the figures measure reading, not recovering.
        args.append("--no-glitches")
        for name, spec in bulk.items():
            args += ["--bulk", f"{name}={spec}"]
        for name, limit in limits.items():
            args += ["--limit", f"{name}={limit}/1"]
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if "listening on" not in line:
            self.process.kill()
            raise RuntimeError(f"the sandbox did not start: {line!r}")
        self.url = line.rsplit(" ", 1)[-1].strip()
        self.health = self.call("GET", "/health")

    def call(self, method: str, path: str) -> Any:
        # Always the sandbox's own http:// address, printed by the child itself.
        request = urllib.request.Request(f"{self.url}/_sandbox{path}", method=method)  # noqa: S310
        with urllib.request.urlopen(request, timeout=600) as response:  # noqa: S310
            return json.load(response)

    def base_url(self, platform: str) -> str:
        return self.url + self.health["platforms"][platform]

    def log_summary(self, platform: str) -> tuple[int, int]:
        """(requests, 429 answers) of one platform since the last clear, then clear."""
        entries = self.call("GET", f"/requests?platform={platform}")["requests"]
        self.call("POST", "/clear-log")
        return len(entries), sum(1 for e in entries if e.get("status") == 429)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# --------------------------------------------------------------------------- one run


@dataclass
class Result:
    platform: str
    tool: str
    label: str
    expected: int
    records: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    peak_rss_mb: float = 0.0
    requests: int = 0
    throttled: int = 0
    exit_code: int = 0
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.records == self.expected

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds and self.ok else 0.0


class PipeCounter(threading.Thread):
    """Counts occurrences of a byte pattern (or lines) in a child's stdout, chunk by chunk."""

    def __init__(self, stream: Any, pattern: bytes | None) -> None:
        super().__init__(daemon=True)
        self.stream, self.pattern = stream, pattern
        self.count, self.tail = 0, b""
        self.head = b""  # the first bytes, kept for tools that print a summary (dlt)

    def run(self) -> None:
        keep = len(self.pattern) - 1 if self.pattern else 0
        while True:
            chunk = self.stream.read1(CHUNK) if hasattr(self.stream, "read1") else b""
            if not chunk:
                break
            if len(self.head) < 65536:
                self.head += chunk[:65536]
            if self.pattern is None:
                self.count += chunk.count(b"\n")
                continue
            data = self.tail + chunk
            self.count += data.count(self.pattern)
            # A match across chunks is counted once: keep only bytes that cannot complete
            # a match already counted.
            self.tail = data[-keep:] if keep else b""
            if self.pattern in self.tail:
                self.count -= self.tail.count(self.pattern)


def run_tool(
    result: Result,
    command: list[str],
    pattern: bytes | None,
    sandbox: Sandbox,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Result:
    with tempfile.TemporaryFile("w+b") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=log, env=env, cwd=cwd or ROOT
        )
        counter = PipeCounter(process.stdout, pattern)
        counter.start()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        counter.join()
        result.seconds = time.perf_counter() - started
        result.exit_code = process.returncode
        result.cpu_seconds = usage.ru_utime + usage.ru_stime
        result.peak_rss_mb = usage.ru_maxrss / 1024
        result.records = counter.count
        result.requests, result.throttled = sandbox.log_summary(result.platform)
        result.extra["stdout_head"] = counter.head
        if result.exit_code != 0:
            log.seek(0)
            lines = log.read().decode("utf-8", "replace").strip().splitlines()
            result.note = lines[-1][:160] if lines else f"exit {result.exit_code}"
    return result


# --------------------------------------------------------------------------- tools


def dexi_access() -> str:
    return hashlib.md5((DEXI_ACCOUNT + DEXI_KEY).encode(), usedforsecurity=False).hexdigest()


def specs(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    """What the floor and dlt need: endpoints, auth headers and the bulk data's names."""
    bulk = sandbox.health["bulk"]
    return {
        "dexi": {
            "platform": "dexi",
            "base_url": sandbox.base_url("dexi") + "/",
            "auth": {"X-DexiIO-Account": DEXI_ACCOUNT, "X-DexiIO-Access": dexi_access()},
            "run_id": bulk["dexi"]["run_id"],
            "result_headers": DEXI_HEADERS,
            "expected": bulk["dexi"]["rows"],
        },
        "reinfer": {
            "platform": "reinfer",
            "base_url": sandbox.base_url("reinfer"),
            "auth": {"Authorization": f"Bearer {REINFER_TOKEN}"},
            "sources": [s["source"] for s in bulk["reinfer"]["sources"]],
            "expected": bulk["reinfer"]["comments"],
        },
        "redivis": {
            "platform": "redivis",
            "base_url": sandbox.base_url("redivis"),
            "auth": {"Authorization": f"Bearer {REDIVIS_TOKEN}"},
            "table": bulk["redivis"]["table"],
            "table_name": bulk["redivis"]["name"],
            "expected": bulk["redivis"]["rows"],
            "metadata": bulk["redivis"].get("metadata"),
        },
    }


def tap_config(
    spec: dict[str, Any],
    budget: float,
    concurrency: int | None,
    read_streams: int | None,
    metadata: bool = False,
) -> dict[str, Any]:
    platform = spec["platform"]
    config: dict[str, Any] = {}
    if concurrency is not None:
        config["max_concurrency"] = concurrency
    if platform == "dexi":
        config["dexi"] = {
            "account_id": DEXI_ACCOUNT,
            "api_key": DEXI_KEY,
            "api_url": spec["base_url"],
            "run_ids": [spec["run_id"]],
            "max_requests_per_second": budget,
        }
    elif platform == "reinfer":
        config["reinfer"] = {
            "api_url": spec["base_url"],
            "token": REINFER_TOKEN,
            "sources": spec["sources"],
            "max_requests_per_second": budget,
        }
    elif metadata:
        config["redivis"] = {
            "api_url": spec["base_url"],
            "token": REDIVIS_TOKEN,
            "organizations": [spec["metadata"]["owner"]],
            "max_requests_per_second": budget,
        }
    else:
        config["redivis"] = {
            "api_url": spec["base_url"],
            "token": REDIVIS_TOKEN,
            "tables": [spec["table"]],
            "max_requests_per_second": budget,
        }
        if read_streams is not None:
            config["redivis"]["read_streams"] = read_streams
    return config


def stream_name(spec: dict[str, Any]) -> str:
    if spec["platform"] == "redivis":
        # the tap's slug of a table name (core/naming.py) for plain lower-case names
        return f"redivis_rows__{spec['table_name']}"
    name = STREAMS[spec["platform"]]
    assert name is not None
    return name


def discover_catalog(config_path: Path, selected: tuple[str, ...], catalog_path: Path) -> None:
    """Discovery once, outside the measured runs (as a Meltano project caches it), with
    only the measured streams selected; their parents still run, without records."""
    out = subprocess.run(
        [str(TAP), "--config", str(config_path), "--discover"],
        capture_output=True,
        check=True,
    ).stdout
    catalog = json.loads(out)
    names = [s["tap_stream_id"] for s in catalog["streams"]]
    if not set(selected) <= set(names):
        raise RuntimeError(f"discovery found no {selected}: {names}")
    for stream in catalog["streams"]:
        for entry in stream.get("metadata", []):
            if entry.get("breadcrumb") == []:
                entry["metadata"]["selected"] = stream["tap_stream_id"] in selected
    catalog_path.write_text(json.dumps(catalog))


def msdk_config(spec: dict[str, Any]) -> dict[str, Any] | None:
    """tap-rest-api-msdk on Re:infer comments; it cannot read Dexi results (rows are
    arrays, and its schema inference wants objects) or Redivis read streams (Arrow)."""
    if spec["platform"] != "reinfer":
        return None
    return {
        "api_url": spec["base_url"],
        "headers": spec["auth"],
        "pagination_request_style": "jsonpath_paginator",
        "next_page_token_path": "$.continuation",
        "pagination_next_page_param": "after",
        "streams": [
            {
                "name": f"comments_{index}",
                "path": f"/api/_private/sources/{source}/comments",
                "params": {"limit": 256},
                "records_path": "$.comments[*]",
                "primary_keys": ["id"],
            }
            for index, source in enumerate(spec["sources"])
        ],
    }


NOT_READABLE = {
    ("msdk", "dexi"): "cannot: result rows are arrays; its schema inference needs objects",
    ("msdk", "redivis"): "cannot: read streams are Arrow IPC, not JSON",
    ("dlt", "redivis"): "cannot: read streams are Arrow IPC, not JSON",
}


def measure(
    tool: str,
    spec: dict[str, Any],
    sandbox: Sandbox,
    work: Path,
    *,
    budget: float = UNLIMITED,
    concurrency: int | None = None,
    read_streams: int | None = None,
    label: str | None = None,
    metadata: bool = False,
) -> Result:
    """One tool's run; ``metadata``: the tap on the Redivis metadata streams instead."""
    platform = spec["platform"]
    expected = spec["expected"]
    if metadata:
        counts = spec["metadata"]
        expected = counts["datasets"] + counts["tables"] + counts["variables"]
    result = Result(platform, tool, label or tool, expected)
    if (tool, platform) in NOT_READABLE:
        result.note = NOT_READABLE[(tool, platform)]
        result.exit_code = -1
        return result
    spec_path = work / f"spec-{platform}.json"
    spec_path.write_text(json.dumps(spec))
    if tool == "ours":
        selected = REDIVIS_METADATA if metadata else (stream_name(spec),)
        config_path = work / f"ours-{platform}-{label or tool}.json"
        config = tap_config(spec, budget, concurrency, read_streams, metadata)
        config_path.write_text(json.dumps(config))
        catalog_path = work / f"catalog-{platform}{'-metadata' if metadata else ''}.json"
        if not catalog_path.exists():
            discover_catalog(config_path, selected, catalog_path)
            sandbox.log_summary(platform)
        command = [str(TAP), "--config", str(config_path), "--catalog", str(catalog_path)]
        # The metadata run configures no table, so every redivis_ record is a metadata one.
        stream = "redivis_" if metadata else selected[0]
        pattern = f'{{"type":"RECORD","stream":"{stream}'.encode()
        if not metadata:
            pattern += b'"'
        return run_tool(result, command, pattern, sandbox)
    if tool == "floor":
        return run_tool(
            result, [str(TOOLS_PY), str(BENCH / "floor.py"), str(spec_path)], None, sandbox
        )
    if tool == "msdk":
        config = msdk_config(spec)
        assert config is not None
        config_path = work / f"msdk-{platform}.json"
        config_path.write_text(json.dumps(config))
        pattern = b'{"type":"RECORD","stream":"comments_'
        return run_tool(result, [str(MSDK), "--config", str(config_path)], pattern, sandbox)
    pipelines = work / f"dlt-{platform}"
    shutil.rmtree(pipelines, ignore_errors=True)
    command = [str(DLT_PY), str(BENCH / "dlt_extract.py"), str(spec_path), str(pipelines)]
    run_tool(result, command, None, sandbox, cwd=work)
    head = result.extra.get("stdout_head", b"").decode("utf-8", "replace").strip()
    try:
        result.records = int(json.loads(head.splitlines()[-1])["records"])
    except (ValueError, KeyError, IndexError):
        result.records = 0
        result.note = result.note or "no summary line from dlt"
    shutil.rmtree(pipelines, ignore_errors=True)
    return result


# --------------------------------------------------------------------------- phases


@dataclass
class Sizes:
    dexi_rows: int
    comments: int
    redivis_rows: int

    def bulk(
        self, dexi_per_execution: int, comments_per_source: int, redivis_datasets: int = 0
    ) -> dict[str, str]:
        redivis = str(self.redivis_rows)
        if redivis_datasets:
            redivis += f"/{redivis_datasets}"
        return {
            "dexi": f"{self.dexi_rows}/{dexi_per_execution}",
            "reinfer": f"{self.comments}/{comments_per_source}",
            "redivis": redivis,
        }


def say(text: str) -> None:
    print(text, flush=True)


def describe(result: Result) -> str:
    if result.exit_code == -1:
        return f"  {result.label:<10} {result.note}"
    status = "ok" if result.ok else f"COUNT {result.records} != {result.expected}"
    if result.exit_code not in (0, -1):
        status = f"FAILED ({result.note})"
    return (
        f"  {result.label:<10} {result.records:>9} records {result.seconds:7.1f} s "
        f"{result.rate:>9.0f} rec/s cpu {result.cpu_seconds:6.1f} s "
        f"rss {result.peak_rss_mb:6.0f} MB req {result.requests:>5} 429s {result.throttled} "
        f"{status}"
    )


def throughput_phase(sizes: Sizes, platforms: list[str], tools: list[str]) -> list[Result]:
    """Zero latency, limits off, budgets high: the comparison is of client work."""
    say(
        f"throughput: dexi {sizes.dexi_rows} rows, reinfer {sizes.comments} comments, "
        f"redivis {sizes.redivis_rows} rows"
    )
    started = time.perf_counter()
    sandbox = Sandbox(
        sizes.bulk(50_000, max(1, sizes.comments // 8)),
        {p: UNLIMITED for p in PLATFORMS},
        0.0,
    )
    say(f"  sandbox ready in {time.perf_counter() - started:.1f} s at {sandbox.url}")
    results: list[Result] = []
    try:
        all_specs = specs(sandbox)
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            for platform in platforms:
                say(f"{platform}:")
                for tool in tools:
                    result = measure(tool, all_specs[platform], sandbox, Path(tmp))
                    say(describe(result))
                    results.append(result)
    finally:
        sandbox.stop()
    return results


LATENCY_BUDGETS = {"dexi": 75, "reinfer": 100, "redivis": 16}
#: Datasets added to the Redivis demo organization for the metadata runs.
REDIVIS_METADATA_DATASETS = 24
#: A far server (another continent): where the Redivis budget lets concurrency show.
REDIVIS_FAR_LATENCY_MS = 200.0


def latency_phase(sizes: Sizes, platforms: list[str], latency_ms: float) -> list[Result]:
    """Added latency, sandbox limits equal to the tap's budgets: sequential against
    concurrent partitions (executions' results, sources, datasets' tables and variables)."""
    say(
        f"latency {latency_ms:.0f} ms: dexi {sizes.dexi_rows} rows (1000 an execution), "
        f"reinfer {sizes.comments} comments (8 sources), redivis metadata "
        f"(+{REDIVIS_METADATA_DATASETS} datasets)"
    )
    results: list[Result] = []
    runs = [(latency_ms, "")]
    if "redivis" in platforms and latency_ms != REDIVIS_FAR_LATENCY_MS:
        runs.append((REDIVIS_FAR_LATENCY_MS, f" {REDIVIS_FAR_LATENCY_MS:.0f} ms"))
    for latency, suffix in runs:
        sandbox = Sandbox(
            sizes.bulk(1000, max(1, sizes.comments // 8), REDIVIS_METADATA_DATASETS),
            {p: LATENCY_BUDGETS[p] for p in PLATFORMS},
            latency,
        )
        try:
            all_specs = specs(sandbox)
            with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
                for platform in platforms if not suffix else ["redivis"]:
                    say(f"{platform}{suffix}:")
                    for label, concurrency in (("sequential", 1), ("concurrent", None)):
                        result = measure(
                            "ours",
                            all_specs[platform],
                            sandbox,
                            Path(tmp),
                            budget=LATENCY_BUDGETS[platform],
                            concurrency=concurrency,
                            label=label + suffix,
                            metadata=platform == "redivis",
                        )
                        say(describe(result))
                        results.append(result)
        finally:
            sandbox.stop()
    return results


def growth_phase(sizes: Sizes, platforms: list[str]) -> list[Result]:
    """The tap alone on a tenth of the data: its peak RSS should not grow with the data."""
    say("growth: ours on a tenth of the data")
    sandbox = Sandbox(
        sizes.bulk(50_000, max(1, sizes.comments // 8)), {p: UNLIMITED for p in PLATFORMS}, 0.0
    )
    results: list[Result] = []
    try:
        all_specs = specs(sandbox)
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            for platform in platforms:
                result = measure("ours", all_specs[platform], sandbox, Path(tmp), label="ours")
                say(f"{platform}:\n{describe(result)}")
                results.append(result)
    finally:
        sandbox.stop()
    return results


# --------------------------------------------------------------------------- report


def ratio(a: Result | None, b: Result | None) -> str:
    if a is None or b is None or not a.rate or not b.rate:
        return "n/a"
    return f"{a.rate / b.rate:.2f}"


def find(results: list[Result], platform: str, label: str) -> Result | None:
    return next((r for r in results if r.platform == platform and r.label == label), None)


def table(results: list[Result], header: str) -> list[str]:
    lines = [
        header,
        "",
        "| platform | tool | records | wall s | records/s | CPU s | peak RSS MB | requests "
        "| 429s | check |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        if r.exit_code == -1:
            lines.append(f"| {r.platform} | {r.label} | | | | | | | | {r.note} |")
            continue
        check = "count ok" if r.ok else f"**{r.records} of {r.expected}** {r.note}".strip()
        lines.append(
            f"| {r.platform} | {r.label} | {r.records} | {r.seconds:.1f} | {r.rate:.0f} | "
            f"{r.cpu_seconds:.1f} | {r.peak_rss_mb:.0f} | {r.requests} | {r.throttled} | "
            f"{check} |"
        )
    return lines


def report(
    args: argparse.Namespace,
    sizes: Sizes,
    throughput: list[Result],
    latency: list[Result],
    growth: list[Result],
    platforms: list[str],
) -> str:
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    measured = {
        "dexi": f"Dexi {sizes.dexi_rows} result rows",
        "reinfer": f"Re:infer {sizes.comments} comments",
        "redivis": f"Redivis {sizes.redivis_rows} table rows",
    }
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        "# Benchmark results",
        "",
        f"Measured {when} on {os.cpu_count()} CPUs ({host.machine()}, Python "
        f"{host.python_version()}) by `bench/compare.py{' --quick' if args.quick else ''}`; "
        + ", ".join(measured[p] for p in platforms)
        + f". One run; every tool reads the same sandbox. Load average at the end: {load}.",
        "",
    ]
    lines += table(throughput, "## Throughput (no added latency, limits off)")
    lines += [
        "",
        "| platform | ours/floor | ours/msdk | ours/dlt |",
        "|---|---:|---:|---:|",
    ]
    for platform in platforms:
        ours = find(throughput, platform, "ours")
        cells = [ratio(ours, find(throughput, platform, t)) for t in ("floor", "msdk", "dlt")]
        lines.append(f"| {platform} | " + " | ".join(cells) + " |")
    if latency:
        lines += [""]
        far = (
            f"; Redivis metadata also at {REDIVIS_FAR_LATENCY_MS:.0f} ms"
            if any(r.label.endswith(" ms") for r in latency)
            else ""
        )
        lines += table(
            latency,
            f"## {args.latency_ms:.0f} ms added latency per request (limits = the tap's "
            f"budgets{far})",
        )
        lines += ["", "| platform | concurrent/sequential | 429s |", "|---|---:|---:|"]
        suffixes = {r.label.partition(" ")[2] for r in latency}
        for platform in platforms:
            for suffix in sorted(suffixes):
                tail = f" {suffix}" if suffix else ""
                seq = find(latency, platform, "sequential" + tail)
                con = find(latency, platform, "concurrent" + tail)
                if seq is None and con is None:
                    continue
                throttled = sum(
                    r.throttled
                    for r in latency
                    if r.platform == platform and r.label.partition(" ")[2] == suffix
                )
                name = platform + (" metadata" if platform == "redivis" else "")
                lines.append(f"| {name}{tail} | {ratio(con, seq)} | {throttled} |")
    if growth:
        lines += ["", "## Peak RSS of the tap as the data grows", ""]
        lines += ["| platform | records (small) | RSS MB | records (large) | RSS MB |"]
        lines += ["|---|---:|---:|---:|---:|"]
        for platform in platforms:
            small, large = find(growth, platform, "ours"), find(throughput, platform, "ours")
            if small and large:
                lines.append(
                    f"| {platform} | {small.records} | {small.peak_rss_mb:.0f} | "
                    f"{large.records} | {large.peak_rss_mb:.0f} |"
                )
    return "\n".join(lines) + "\n"


def chart(
    throughput: list[Result], latency: list[Result], platforms: list[str], path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if latency else 1
    figure, axes = plt.subplots(1, panels, figsize=(6 * panels, 4), squeeze=False)
    ax = axes[0][0]
    width = 0.8 / len(TOOLS)
    colors = {"ours": "#1f77b4", "floor": "#7f7f7f", "msdk": "#ff7f0e", "dlt": "#2ca02c"}
    for index, tool in enumerate(TOOLS):
        rates = [getattr(find(throughput, p, tool), "rate", 0.0) / 1000 for p in platforms]
        xs = [i + (index - (len(TOOLS) - 1) / 2) * width for i in range(len(platforms))]
        ax.bar(xs, rates, width, label=tool, color=colors[tool])
    ax.set_xticks(range(len(platforms)), platforms)
    ax.set_ylabel("thousand records / s")
    ax.set_title("Throughput, no added latency")
    ax.legend()
    if latency:
        ax = axes[0][1]
        names, speedups = [], []
        suffixes = sorted({r.label.partition(" ")[2] for r in latency})
        for platform in platforms:
            for suffix in suffixes:
                tail = f" {suffix}" if suffix else ""
                seq = find(latency, platform, "sequential" + tail)
                con = find(latency, platform, "concurrent" + tail)
                if seq is None or con is None:
                    continue
                names.append(platform + (" meta" if platform == "redivis" else "") + tail)
                speedups.append(con.rate / seq.rate if seq.rate and con.rate else 0.0)
        ax.bar(range(len(names)), speedups, 0.6, color="#1f77b4")
        ax.axhline(3.0, color="#d62728", linestyle="--", label="target 3x")
        ax.set_xticks(range(len(names)), names, fontsize=8)
        ax.set_ylabel("concurrent / sequential")
        ax.set_title("Added latency: speed-up of concurrency")
        ax.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="100k rows, 20k comments")
    parser.add_argument("--rows", type=int, help="Dexi result rows and Redivis table rows")
    parser.add_argument("--comments", type=int, help="Re:infer comments")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--platforms", default=",".join(PLATFORMS))
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--no-latency", action="store_true", help="skip the latency part")
    parser.add_argument("--no-growth", action="store_true", help="skip the RSS growth part")
    parser.add_argument("--output", default=str(BENCH / "results.md"))
    parser.add_argument("--chart", default=str(BENCH / "results.png"))
    args = parser.parse_args()

    rows = args.rows or (100_000 if args.quick else 1_000_000)
    comments = args.comments or (20_000 if args.quick else 200_000)
    sizes = Sizes(rows, comments, rows)
    platforms = [p for p in args.platforms.split(",") if p]
    tools = [t for t in args.tools.split(",") if t]
    for needed in (TAP, TOOLS_PY, DLT_PY, MSDK):
        if not needed.exists() and (needed != DLT_PY or "dlt" in tools):
            if needed == MSDK and "msdk" not in tools:
                continue
            print(f"missing {needed}: run `make bench` (it creates the environments)")
            return 2

    throughput = throughput_phase(sizes, platforms, tools)
    latency: list[Result] = []
    if not args.no_latency:
        small = Sizes(max(1000, rows // 5), max(1000, comments // 5), max(1000, rows // 5))
        latency = latency_phase(small, platforms, args.latency_ms)
    growth: list[Result] = []
    if not args.no_growth and not args.quick:
        growth = growth_phase(Sizes(rows // 10, comments // 10, rows // 10), platforms)

    text = report(args, sizes, throughput, latency, growth, platforms)
    Path(args.output).write_text(text)
    chart(throughput, latency, platforms, Path(args.chart))
    print()
    print(text)
    print(f"written: {args.output}, {args.chart}")
    failed = [r for r in throughput + latency + growth if r.exit_code != -1 and not r.ok]
    throttled = sum(r.throttled for r in latency)
    if failed or throttled:
        print(f"FAILED: {len(failed)} run(s) with a wrong count or exit, {throttled} 429s")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
