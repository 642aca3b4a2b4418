"""Read tables with the official Redivis client and write every row as JSON lines.

Runs in .venv-oracle (tests/oracle/requirements.txt), never in the tap's environment:

    REDIVIS_API_ENDPOINT=http://127.0.0.1:PORT/api/v1 REDIVIS_API_TOKEN=... \
        .venv-oracle/bin/python tests/oracle/read_redivis.py OUT.jsonl KIND:OWNER:DS:TABLE ...

KIND is ``organization`` or ``user``. With ORACLE_FORCE_READ_SESSIONS=0 the client keeps its
default: tables under 1e8 bytes are read with one ``GET /tables/{ref}/rows``. Each output
line is ``{"table": spec, "row": {...}}`` with dates, dateTimes and times in ISO form.
Otherwise read sessions are forced (no single-request ``/rows`` read) with up to four
streams, so the streamed path with its end-of-stream batch and its resume after a stream
ended early is what is exercised.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from typing import Any

import redivis
import redivis.common.fetch_rows

if os.environ.get("ORACLE_FORCE_READ_SESSIONS", "1") == "1":
    redivis.common.fetch_rows.LIST_ROWS_MAX_BYTES = 0


def plain(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    return value


def main(out_path: str, specs: list[str]) -> None:
    with open(out_path, "w", encoding="utf-8") as out:
        for spec in specs:
            kind, owner, dataset, table = spec.split(":", 3)
            parent = redivis.organization(owner) if kind == "organization" else redivis.user(owner)
            reader = parent.dataset(dataset).table(table)
            arrow = reader.to_arrow_table(progress=False, max_parallelization=4)
            types = {field.name: str(field.type) for field in arrow.schema}
            out.write(json.dumps({"table": spec, "types": types}) + "\n")
            for row in arrow.to_pylist():
                record = {name: plain(value) for name, value in row.items()}
                out.write(json.dumps({"table": spec, "row": record}) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
