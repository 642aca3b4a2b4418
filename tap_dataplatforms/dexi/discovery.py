"""Which Dexi streams exist: one results stream per run, one rows stream per dataset.

Results and dataset rows carry no column types, so at ``--discover`` the columns come
from the data: the latest finished result of each run, the first page of each dataset.
A sync given a catalog takes the columns from it instead (no extra requests, and the
SCHEMA it announces is the one the catalog declared).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import requests
from singer_sdk.exceptions import RetriableAPIError

from tap_dataplatforms.core.errors import PartitionError
from tap_dataplatforms.core.http import check_connection
from tap_dataplatforms.core.partition import in_partition
from tap_dataplatforms.core.readahead import read_ahead
from tap_dataplatforms.dexi.client import PAGE_SIZE, encode_segment
from tap_dataplatforms.dexi.columns import (
    infer_columns,
    infer_objects,
    merge_kinds,
    run_slugs,
    slugify,
)
from tap_dataplatforms.dexi.executions import RunStarter, StateClock, epoch_ms, is_open
from tap_dataplatforms.dexi.streams import (
    DatasetRowsStream,
    ExecutionsStream,
    FilesStream,
    ResultsStream,
    RunsStream,
)

if TYPE_CHECKING:
    from singer_sdk import Stream, Tap

logger = logging.getLogger("tap-dataplatforms.dexi")

RESULTS_PREFIX = "dexi_results__"
DATASET_PREFIX = "dexi_dataset_rows__"
_OWN_COLUMNS = frozenset({"_execution_id", "_run_id", "_row_index"})
#: Executions looked at for a run's latest finished result.
LATEST_WINDOW = 30
#: Results whose values type the columns.
SAMPLED_RESULTS = 3


def catalog_columns(tap: Tap) -> dict[str, dict[str, str | None]]:
    """Stream name -> column kinds, from the input catalog's Dexi dynamic streams."""
    catalog = tap.input_catalog
    found: dict[str, dict[str, str | None]] = {}
    if catalog is None:
        return found
    for entry in catalog.values():
        name = entry.tap_stream_id
        if not name.startswith((RESULTS_PREFIX, DATASET_PREFIX)):
            continue
        properties: dict[str, Any] = entry.schema.to_dict().get("properties") or {}
        columns: dict[str, str | None] = {}
        for column, spec in properties.items():
            if column in _OWN_COLUMNS:
                continue
            types = spec.get("type") or ["string"]
            types = [types] if isinstance(types, str) else types
            columns[column] = next((t for t in types if t != "null"), "string")
        found[name] = columns
    return found


def list_runs(stream: RunsStream) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    contexts: list[dict[str, Any] | None] = [None]
    if stream.partitions:
        contexts = [*stream.partitions]
    for context in contexts:
        try:
            runs.extend(stream.request_records(context))
        except PartitionError as exc:
            # The sync reports it as that run's failure; discovery goes on.
            logger.warning("Dexi: run not found at discovery: %s", exc)
    return runs


def latest_columns(stream: ExecutionsStream, run_id: str) -> dict[str, str | None]:
    """Columns of the run's latest finished results (successful ones first), typed from
    the union of up to ``SAMPLED_RESULTS`` results, since one can hold only some kinds."""
    headers: list[str] = []
    kinds: dict[str, list[str | None]] = {}
    try:
        body = stream.fetch_rows(
            f"runs/{encode_segment(run_id)}/executions", {"offset": 0, "limit": LATEST_WINDOW}
        )
        finished = [
            r
            for r in body.get("rows") or []
            if not is_open({**r, "finished": epoch_ms(r.get("finished"))})
        ]
        finished.sort(key=lambda r: r.get("state") != "OK")  # stable: newest OK first
        sampled = 0
        for execution in finished:
            if sampled >= SAMPLED_RESULTS:
                break
            result = stream.fetch_rows(
                f"executions/{encode_segment(str(execution['_id']))}/result", {"format": "json"}
            )
            names = [str(h) for h in result.get("headers") or []]
            headers += [h for h in names if h not in kinds]
            for name, kind in infer_columns(names, result.get("rows") or []).items():
                kinds.setdefault(name, []).append(kind)
            sampled += 1 if result.get("rows") else 0
    except (PartitionError, RetriableAPIError, requests.RequestException) as exc:
        # The sync reports what keeps failing; discovery types what it could read.
        logger.warning("Dexi: result columns of run %s are incomplete: %s", run_id, exc)
    return {name: merge_kinds(kinds[name]) for name in headers}


def dataset_columns(tap: Tap, name: str, dataset_id: str) -> dict[str, str | None]:
    probe = DatasetRowsStream(tap, name=name, dataset_id=dataset_id, columns={})
    try:
        body = probe.fetch_rows(
            probe.path or "", method="POST", body={"offset": 0, "limit": PAGE_SIZE}
        )
    except (PartitionError, RetriableAPIError, requests.RequestException) as exc:
        logger.warning("Dexi: no columns for dataset %s: %s", dataset_id, exc)
        return {}
    return infer_objects(body.get("rows") or [])


def discover(tap: Tap) -> list[Stream]:
    runs = RunsStream(tap)
    executions = ExecutionsStream(tap)
    files = FilesStream(tap)
    files.state_clock = StateClock()
    # Fail fast, in one line, on bad credentials or an unreachable host.
    check_connection(runs, "runs", {"offset": 0, "limit": 1})
    known = catalog_columns(tap)
    streams: list[Stream] = [runs, executions]

    # Names from every run, streams for this partition's: so that each results stream has
    # the name a full sync gives it, and n partitions load into the same tables.
    lister = RunsStream(tap)
    lister.whole_account = True
    every_run = list_runs(lister)
    run_list = [r for r in every_run if runs.owns(str(r["_id"]))]
    if runs.settings.execute_runs:
        executions.starter = RunStarter(tap, [str(r["_id"]) for r in run_list])
    every_slug = run_slugs(
        [(str(r["_id"]), str(r.get("name") or "")) for r in every_run],
        runs.settings.result_stream_names,
    )
    slugs = {str(r["_id"]): every_slug[str(r["_id"])] for r in run_list}
    ordered = sorted(slugs.items(), key=lambda item: item[1])
    unknown = [run_id for run_id, slug in ordered if RESULTS_PREFIX + slug not in known]
    # One or more requests per run: read several runs at once, inside the budget.
    workers = max(1, min(runs.common.max_concurrency, len(unknown)))
    columns_of = read_ahead(unknown, lambda run_id: latest_columns(executions, run_id), workers)
    found = dict(zip(unknown, columns_of, strict=True))
    for run_id, slug in ordered:
        name = RESULTS_PREFIX + slug
        columns = known.get(name)
        if columns is None:
            columns = found[run_id]
        results = ResultsStream(tap, name=name, run_id=run_id, columns=columns, files=files)
        results.state_clock = files.state_clock
        streams.append(results)

    for dataset_id in dict.fromkeys(runs.settings.dataset_ids or ()):
        # A dataset is a parent of its own: under `partition` one process reads its rows
        # (and announces its stream), so that n processes emit each row once.
        if not in_partition(runs.common.partition, str(dataset_id)):
            continue
        name = DATASET_PREFIX + (slugify(dataset_id) or "dataset")
        columns = known.get(name)
        if columns is None:
            columns = dataset_columns(tap, name, dataset_id)
        streams.append(DatasetRowsStream(tap, name=name, dataset_id=dataset_id, columns=columns))

    streams.append(files)  # after the results streams: it takes the cells they saw
    return streams
