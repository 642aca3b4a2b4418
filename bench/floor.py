"""The raw floor of the side-by-side benchmark: the same pages as the tap, nothing else.

Fetches the endpoints the tap reads with ``requests`` (one session, sequential) and writes
each record as one JSON line (``orjson``) to stdout: no Singer messages, no schema, no
validation, no type conformance, no retries, no rate budget. It is the least work any
client of these APIs must do, so the tap's throughput is reported as a share of it.

    python bench/floor.py SPEC.json      # SPEC: {"platform", "base_url", "auth", ...}

Runs in the benchmark's own environment (requests, orjson, pyarrow), not the tap's.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import orjson
import requests

PAGE = 200  # Dexi's list cap
COMMENTS_PAGE = 256  # Re:infer's comment page cap


def dexi_records(session: requests.Session, spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    base = spec["base_url"].rstrip("/")
    run_id = spec["run_id"]
    executions: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = session.get(
            f"{base}/runs/{run_id}/executions", params={"offset": offset, "limit": PAGE}
        ).json()
        rows = page.get("rows") or []
        executions.extend(rows)
        offset += len(rows)
        if not rows or offset >= int(page.get("totalRows") or 0):
            break
    for execution in executions:
        if execution.get("finished") is None:
            continue
        response = session.get(
            f"{base}/executions/{execution['_id']}/result", params={"format": "json"}
        )
        body = orjson.loads(response.content)
        headers = body["headers"]
        for index, row in enumerate(body["rows"]):
            record = dict(zip(headers, row, strict=False))
            record["_execution_id"] = execution["_id"]
            record["_row_index"] = index
            yield record


def reinfer_records(session: requests.Session, spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    base = spec["base_url"].rstrip("/")
    for source in spec["sources"]:
        url = f"{base}/api/_private/sources/{source}/comments"
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": COMMENTS_PAGE}
            if after:
                params["after"] = after
            body = orjson.loads(session.get(url, params=params).content)
            yield from body["comments"]
            after = body.get("continuation")
            if not after:
                break


def redivis_records(session: requests.Session, spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    import pyarrow.ipc as ipc

    base = spec["base_url"].rstrip("/")
    reference = quote(spec["table"], safe="")
    read = session.post(
        f"{base}/tables/{reference}/readSessions",
        json={"format": "arrow", "requestedStreamCount": 1},
    ).json()
    for stream in read["streams"]:
        # Done at the zero-row end batch only; a body that ends without it is resumed.
        offset, finished = 0, False
        while not finished:
            response = session.get(
                f"{base}/readStreams/{stream['id']}",
                params={"offset": offset, "eosSentinel": "true"},
                stream=True,
            )
            response.raw.decode_content = True
            with ipc.open_stream(response.raw) as reader:
                for batch in reader:
                    if batch.num_rows == 0:
                        finished = True
                        break
                    offset += batch.num_rows
                    yield from batch.to_pylist()


READERS = {"dexi": dexi_records, "reinfer": reinfer_records, "redivis": redivis_records}


def main() -> int:
    with open(sys.argv[1]) as handle:
        spec = json.load(handle)
    session = requests.Session()
    session.headers.update(spec["auth"])
    out = sys.stdout.buffer
    dumps = orjson.dumps
    newline = orjson.OPT_APPEND_NEWLINE
    for record in READERS[spec["platform"]](session, spec):
        out.write(dumps(record, option=newline))
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
