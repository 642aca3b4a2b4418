"""Files behind ``FILE:<mime type>;<size>;<file id>`` result cells, streamed to disk."""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tap_dataplatforms.dexi.client import encode_file_id, encode_segment

if TYPE_CHECKING:
    import requests

    from tap_dataplatforms.dexi.client import DexiStream

PREFIX = "FILE:"
CHUNK_BYTES = 1 << 16


def parse_file_cell(cell: str) -> tuple[str | None, int | None, str] | None:
    """(mime type, size, file id) of a ``FILE:`` cell; the id is the last ``;`` segment,
    from ``accounts/`` onward (doc)."""
    if not isinstance(cell, str) or not cell.startswith(PREFIX):
        return None
    parts = cell[len(PREFIX) :].split(";")
    file_id = parts[-1]
    if "accounts/" in file_id:
        file_id = file_id[file_id.index("accounts/") :]
    if not file_id:
        return None
    mime_type = parts[0] if len(parts) >= 3 and parts[0] else None
    size = int(parts[1]) if len(parts) >= 3 and parts[1].isdigit() else None
    return mime_type, size, file_id


def file_cells(cells: Iterable[Any]) -> list[str]:
    return [c for c in cells if isinstance(c, str) and c.startswith(PREFIX)]


def local_path(files_dir: str, file_id: str) -> Path:
    """Where a file goes: its id's segments under ``files_dir``, never outside it."""
    parts = [p for p in file_id.split("/") if p not in ("", ".", "..")]
    return Path(files_dir, *parts) if parts else Path(files_dir, "file")


def download_file(
    stream: DexiStream, execution_id: str, file_id: str, files_dir: str
) -> tuple[str, int, str, str | None]:
    """Stream one file to disk; return (path, bytes, sha256 hex, Content-Type). A body
    that breaks off is downloaded again (``read_streamed``).

    Written to a temporary file beside the target and renamed, so an interrupted
    download never leaves a truncated file under the final name.
    """
    url = (
        stream.url_base
        + f"executions/{encode_segment(execution_id)}/file/{encode_file_id(file_id)}"
    )
    target = local_path(files_dir, file_id)

    def save(response: requests.Response, skip: int) -> Iterator[tuple[str, int, str, str | None]]:
        yield save_body(response, target)

    opened = functools.partial(stream.stream_body, url)
    (saved,) = stream.read_streamed(opened, save, what=f"Dexi: file {file_id}")
    return saved


def save_body(response: requests.Response, target: Path) -> tuple[str, int, str, str | None]:
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".part-")
    try:
        with os.fdopen(handle, "wb") as out:
            for chunk in response.iter_content(CHUNK_BYTES):
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return str(target), size, digest.hexdigest(), response.headers.get("Content-Type")
