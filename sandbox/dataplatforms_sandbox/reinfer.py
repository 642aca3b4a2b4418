"""Re:infer / UiPath Communications Mining, as documented (shared/apis/reinfer.md).

Served under ``/reinfer`` in both tenant styles: directly (``<base>/api/...``, like
``https://acme.reinfer.io``) and behind a UiPath prefix (``<base>/acme-org/acme-tenant/
reinfer_/api/...``, like ``https://cloud.uipath.com/<org>/<tenant>/reinfer_``):

- ``GET /auth/user``
- ``GET /api/_private/projects``, ``GET /api/_private/projects/{p}``
- ``GET /api/v1/datasets``, ``/api/v1/datasets/{p}``, ``/api/v1/datasets/{p}/{d}``,
  ``/api/v1/datasets/id:{id}``
- ``GET /api/v1/sources``, ``/api/v1/sources/{p}``, ``/api/v1/sources/{p}/{s}``,
  ``/api/v1/sources/id:{id}``
- ``GET /api/_private/sources/{p}/{s}/comments`` (``from_timestamp``, ``to_timestamp``,
  ``after``, ``limit`` 1..256, default 64)
- ``GET /api/v1/datasets/{p}/{d}/streams``, ``/api/v1/datasets/{p}/{d}/streams/{st}``
- ``GET /api/_private/datasets/{p}/{d}/labellings`` (``source_id``, ``after``, ``limit``,
  ``return_predictions``)
- ``POST /api/_private/datasets/{p}/{d}/labellers`` (body ``{}``): the dataset's model
  versions, ``{"labellers": [{"version": 7, ...}]}``, in no particular order; empty for a
  dataset without a trained model (``acme-sales/pipeline``)
- ``POST /api/v1/datasets/{p}/{d}/labellers/{v}/predict-comments`` (body ``{"uids": [...],
  "threshold": "auto"}``): one prediction per uid the model scored, in no particular
  order (shuffled); a uid that is no comment of the dataset's sources is left out of the
  answer; more than ``MAX_PREDICT_UIDS`` uids is a 400; an unknown version a 404

Modelled behaviour: ``Authorization: Bearer`` only (the old ``X-Auth-Token`` is ignored);
``{"status": "ok", ...}`` bodies and ``{"status": "error", "message": ...}`` errors (an
unknown path answers ``404 Not Found``); ``Server-Timing: total;dur=<ms>`` on every answer;
comments in ascending ``timestamp`` with many comments sharing one timestamp, bounded by an
opaque ``continuation`` that is ``null`` on the last page; timestamps parsed strictly, so an
unescaped ``+`` (decoded as a space) is a 400; labellings paged with ``after``, which is
sent on every page, the final empty one included (only an empty ``results`` ends them);
label names as arrays of parts; a 429 without any wait hint (none is documented); a
switch that makes every ``_private`` route answer a bare 404 (tenants where they are gone);
``advance()`` adding new comments for incremental tests. Predictions follow the official
client's types: ``labels`` of ``{name: [parts], probability, sentiment?: number,
auto_thresholds?: [string]}`` and ``entities``, each left out when empty (the client skips
empty lists), deterministic per (dataset, model version, uid), so ``predicted_keys()`` is
what a complete sync must deliver.
"""

from __future__ import annotations

import base64
import bisect
import datetime as dt
import hashlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .credentials import CREDENTIALS
from .framework import (
    Identity,
    Platform,
    Request,
    Response,
    Router,
    Verdict,
    json_response,
    reason_phrase,
    register_platform,
)
from .shapes import with_unknown_fields

TOKEN = CREDENTIALS["reinfer"]["token"]
UIPATH_PREFIX = "/acme-org/acme-tenant/reinfer_"
DEFAULT_COMMENT_LIMIT = 64
MAX_COMMENT_LIMIT = 256
DEFAULT_LABELLING_LIMIT = 64
MAX_LABELLING_LIMIT = 256
#: uids per predict-comments request (notes: "assumed <= 1024"; the CLI sends 512).
MAX_PREDICT_UIDS = 1024
#: Names of the auto thresholds a predicted label may meet (``threshold: "auto"``).
AUTO_THRESHOLDS = ("high_recall", "balanced", "high_precision")
EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
UTC = dt.timezone.utc


def _digest(*parts: object) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()


def render_ts(moment: dt.datetime) -> str:
    """The API's form: microseconds and an explicit offset (notes 9)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def parse_ts(text: str) -> dt.datetime:
    """RFC 3339 with a mandatory offset or ``Z``; anything else is rejected."""
    if any(ch.isspace() for ch in text):
        raise ValueError(text)
    value = text
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    if len(value) < 20 or value[10] not in "Tt":
        raise ValueError(text)
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(text)
    return parsed.astimezone(UTC)


# --------------------------------------------------------------------------- data model


@dataclass
class Comment:
    id: str
    uid: str
    thread_id: str
    timestamp: dt.datetime
    created_at: dt.datetime
    subject: str
    body: str
    sender: str
    properties: dict[str, Any]
    attachments: list[dict[str, Any]]

    @property
    def sort_key(self) -> tuple[dt.datetime, str]:
        return (self.timestamp, self.id)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "uid": self.uid,
            "thread_id": self.thread_id,
            "timestamp": render_ts(self.timestamp),
            "messages": [
                {
                    "body": {"text": self.body},
                    "subject": {"text": self.subject},
                    "from": self.sender,
                    "to": ["support@acme.example"],
                    "sent_at": render_ts(self.timestamp),
                    "language": "en",
                }
            ],
            "user_properties": dict(self.properties),
            "attachments": list(self.attachments),
            "created_at": render_ts(self.created_at),
            "has_annotations": False,
        }


@dataclass
class Source:
    id: str
    owner: str
    name: str
    title: str
    kind: str
    created_at: dt.datetime
    comments: list[Comment] = field(default_factory=list)
    keys: list[tuple[dt.datetime, str]] = field(default_factory=list)  # sorted sort keys
    # Benchmark sources: comments never change, so each is serialized once (encoded).
    frozen: bool = False
    encoded: dict[str, bytes] = field(default_factory=dict, repr=False)
    by_id: dict[str, Comment] = field(default_factory=dict, repr=False)

    def comment_json(self, comment: Comment) -> bytes:
        cached = self.encoded.get(comment.id)
        if cached is None:
            cached = json.dumps(
                with_unknown_fields(comment.to_json(), skip=_DATA_MAPS),
                separators=(",", ":"),
                ensure_ascii=False,
            ).encode("utf-8")
            self.encoded[comment.id] = cached
        return cached

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    def add(self, comment: Comment) -> None:
        index = bisect.bisect_right(self.keys, comment.sort_key)
        self.keys.insert(index, comment.sort_key)
        self.comments.insert(index, comment)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "owner": self.owner,
            "name": self.name,
            "title": self.title,
            "description": f"Comments of {self.title}",
            "language": "en",
            "should_translate": False,
            "sensitive_properties": [],
            "bucket_id": None,
            "_kind": self.kind,
            "created_at": render_ts(self.created_at),
            "updated_at": render_ts(self.created_at + dt.timedelta(days=3)),
        }


@dataclass
class Labelling:
    comment: Comment
    source_id: str
    assigned: list[list[str]]
    dismissed: list[list[str]]
    predicted: list[tuple[list[str], float]]

    def to_json(self, predictions: bool) -> dict[str, Any]:
        group: dict[str, Any] = {
            "group": "default",
            "assigned": [{"name": n, "sentiment": "positive"} for n in self.assigned],
            "dismissed": [{"name": n, "sentiment": "negative"} for n in self.dismissed],
        }
        if predictions:
            group["predicted"] = [
                # Predicted labels carry sentiment as a number (-1 .. 1), never as words.
                {"name": n, "sentiment": round(2 * p - 1, 3), "probability": p}
                for n, p in self.predicted
            ]
        return {"comment": self.comment.to_json(), "labelling": [group], "entities": {}}


@dataclass
class Dataset:
    id: str
    owner: str
    name: str
    title: str
    source_ids: list[str]
    created: dt.datetime
    labellings: dict[str, list[Labelling]]  # source id -> labellings in a stable order
    streams: list[dict[str, Any]]
    # Trained model versions, in the order the labellers listing gives them (not sorted).
    model_versions: list[int] = field(default_factory=list)

    @property
    def latest_model(self) -> int | None:
        return max(self.model_versions) if self.model_versions else None

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "owner": self.owner,
            "title": self.title,
            "description": "",
            "source_ids": list(self.source_ids),
            "has_sentiment": True,
            "model_family": "english",
            "label_defs": [{"name": name} for name in LABELS],
            "label_groups": [{"name": "default"}],
            "entity_defs": [],
            "general_fields": [],
            # A list of flag names (the client's type), as a tenant with GPT features has.
            "_dataset_flags": ["gpt4", "qos"][: 1 + len(self.name) % 2],
            "_model_config": {"version": 3},
            "created": render_ts(self.created),
            "last_modified": render_ts(self.created + dt.timedelta(days=40)),
        }


LABELS = ("Billing", "Billing > Refund", "Billing > Invoice", "Delivery", "Delivery > Late")
# Customer mail is multilingual: subjects with two-, three- and four-byte UTF-8 characters.
SUBJECTS = (
    "Invoice question",
    "Where is my parcel?",
    "Rückerstattung bitte",
    "Où est mon colis ?",
    "Счёт за март",
    "ご注文について",
    "Thanks 🙏",
)


class ReinferData:
    """Seeded projects, sources with comments, datasets with labellings and streams."""

    def __init__(self, seed: int, scale: int) -> None:
        self.rng = random.Random(_digest("reinfer", seed, scale))
        self.seed = seed
        self.scale = scale
        self.private_routes = True  # False: every `_private` route answers a bare 404
        self.max_predict_uids = MAX_PREDICT_UIDS  # more uids in one request: a 400
        self.projects: list[dict[str, Any]] = []
        self.sources: dict[str, Source] = {}  # by id
        self.datasets: dict[str, Dataset] = {}  # by id
        self._seed()

    # -- lookups -----------------------------------------------------------------------

    def source_named(self, owner: str, name: str) -> Source | None:
        return next((s for s in self.sources.values() if s.owner == owner and s.name == name), None)

    def dataset_named(self, owner: str, name: str) -> Dataset | None:
        return next(
            (d for d in self.datasets.values() if d.owner == owner and d.name == name), None
        )

    def comment_keys(self, sources: list[str] | None = None) -> set[tuple[str, str]]:
        """``(source_id, id)`` of every comment (of the named ``owner/name`` sources)."""
        return {
            (s.id, c.id)
            for s in self.sources.values()
            if sources is None or s.full_name in sources
            for c in s.comments
        }

    def dataset_comments(self, dataset: Dataset) -> list[Comment]:
        return [c for sid in dataset.source_ids for c in self.sources[sid].comments]

    def comment_by_uid(self, dataset: Dataset, uid: str) -> Comment | None:
        """The comment of one of the dataset's sources with this uid (``source_id.id``)."""
        source_id, dot, comment_id = uid.partition(".")
        if not dot or source_id not in dataset.source_ids:
            return None
        source = self.sources.get(source_id)
        if source is None:
            return None
        if not source.by_id or len(source.by_id) != len(source.comments):
            source.by_id = {c.id: c for c in source.comments}
        return source.by_id.get(comment_id)

    def predicted_keys(self) -> set[tuple[str, str, int]]:
        """``(dataset_id, uid, model_version)`` of every comment the latest model of each
        dataset scores: every comment of the dataset's sources."""
        return {
            (d.id, c.uid, d.latest_model)
            for d in self.datasets.values()
            if d.latest_model is not None
            for c in self.dataset_comments(d)
        }

    def prediction(self, dataset: Dataset, version: int, comment: Comment) -> dict[str, Any]:
        """What model ``version`` of ``dataset`` predicts for ``comment``: fixed per
        (dataset, version, uid). Empty ``labels`` / ``entities`` are left out, as the
        official client serialises them."""
        rng = random.Random(_digest("prediction", self.seed, dataset.id, version, comment.uid))
        answer: dict[str, Any] = {"uid": comment.uid}
        labels = []
        for name in rng.sample(LABELS, rng.choice((0, 1, 1, 2, 3))):
            label: dict[str, Any] = {
                "name": name.split(" > "),
                "probability": round(rng.uniform(0.05, 0.99), 6),
            }
            if rng.random() < 0.8:  # sentiment: a number in [-1, 1], or absent
                label["sentiment"] = round(rng.uniform(-1, 1), 4)
            met = [t for i, t in enumerate(AUTO_THRESHOLDS) if label["probability"] > 0.3 + i * 0.2]
            label["auto_thresholds"] = met
            labels.append(label)
        if labels:
            answer["labels"] = labels
        if rng.random() < 0.3:
            start = rng.randint(0, 5)
            answer["entities"] = [
                {
                    "name": "order_number",
                    "formatted_value": f"ORD-{rng.randint(1000, 9999)}",
                    "spans": [
                        {
                            "content_part": "body",
                            "message_index": 0,
                            "char_start": start,
                            "char_end": start + 8,
                            "utf16_byte_start": start * 2,
                            "utf16_byte_end": (start + 8) * 2,
                        }
                    ],
                }
            ]
        return answer

    def labelling_keys(self) -> set[tuple[str, str]]:
        return {
            (d.id, lab.comment.uid)
            for d in self.datasets.values()
            for labs in d.labellings.values()
            for lab in labs
        }

    # -- seeding -----------------------------------------------------------------------

    def _id(self, *parts: object) -> str:
        return _digest(self.seed, *parts)[:16]

    def _seed(self) -> None:
        for name, title in (("acme-support", "ACME Support"), ("acme-sales", "ACME Sales")):
            self.projects.append(
                {
                    "id": self._id("project", name),
                    "name": name,
                    "title": title,
                    "description": f"{title} communications",
                    "created_at": render_ts(EPOCH - dt.timedelta(days=300)),
                    "updated_at": render_ts(EPOCH - dt.timedelta(days=10)),
                }
            )
        # (owner, name, kind, comments at scale 1)
        layout = (
            ("acme-support", "inbox", "chat", 1300),
            ("acme-support", "escalations", "call", 700),
            ("acme-support", "archive", "chat", 0),
            ("acme-sales", "leads", "chat", 600),
            ("acme-sales", "calls", "call", 257),
        )
        for owner, name, kind, count in layout:
            source = Source(
                id=self._id("source", owner, name),
                owner=owner,
                name=name,
                title=f"{owner} {name}".title(),
                kind=kind,
                created_at=EPOCH - dt.timedelta(days=30),
            )
            self.sources[source.id] = source
            self._comments(source, count * self.scale, EPOCH)
        inbox, escalations, leads = (
            self.sources[self._id("source", owner, name)]
            for owner, name in (
                ("acme-support", "inbox"),
                ("acme-support", "escalations"),
                ("acme-sales", "leads"),
            )
        )
        # (owner, name, sources, trained model versions as listed); pipeline has no model.
        for owner, name, sources, versions in (
            ("acme-support", "billing", [inbox, escalations], [5, 7, 6]),
            ("acme-support", "triage", [inbox], [2]),
            ("acme-sales", "pipeline", [leads], []),
        ):
            self._dataset(owner, name, sources, versions)

    def _comments(
        self, source: Source, count: int, start: dt.datetime, max_gap: int = 5400
    ) -> None:
        moment = start
        existing = len(source.comments)
        for n in range(existing, existing + count):
            # Ties are common: a batch of emails imported with one timestamp. Around the
            # first page boundary (256) a run of ties crosses it on purpose.
            tie = self.rng.random() < 0.3 or 250 <= n <= 262
            if n and not tie:
                moment += dt.timedelta(seconds=self.rng.randint(1, max_gap), microseconds=n % 7)
            self._comment(source, n, moment)

    def _comment(self, source: Source, n: int, moment: dt.datetime) -> Comment:
        rng = self.rng
        # Ids are the uploader's: they repeat across sources, unique within one.
        cid = f"msg-{n:06d}"
        properties: dict[str, Any] = {"string:Customer Tier": rng.choice(["Gold", "Silver"])}
        if rng.random() < 0.5:
            properties["number:Order Value"] = round(rng.uniform(5, 900), 2)
        attachments = []
        if rng.random() < 0.2:
            attachments.append(
                {
                    "name": f"file-{n}.pdf",
                    "size": rng.randint(1000, 90000),
                    "content_type": "application/pdf",
                }
            )
        comment = Comment(
            id=cid,
            uid=f"{source.id}.{cid}",
            thread_id=f"t-{n // 3}",
            timestamp=moment,
            created_at=moment + dt.timedelta(minutes=rng.randint(1, 90), microseconds=n),
            subject=rng.choice(SUBJECTS),
            body=f"Message {n} of {source.full_name}.",
            sender=f"customer{n % 97}@example.com",
            properties=properties,
            attachments=attachments,
        )
        source.add(comment)
        return comment

    def _dataset(self, owner: str, name: str, sources: list[Source], versions: list[int]) -> None:
        rng = self.rng
        labellings: dict[str, list[Labelling]] = {}
        for source in sources:
            reviewed = [c for i, c in enumerate(source.comments) if i % 5 == 0]
            labellings[source.id] = [
                Labelling(
                    comment=c,
                    source_id=source.id,
                    assigned=[rng.choice(LABELS).split(" > ")],
                    dismissed=[] if rng.random() < 0.7 else [["Delivery"]],
                    predicted=[(rng.choice(LABELS).split(" > "), round(rng.random(), 3))],
                )
                for c in reviewed
            ]
        dataset_id = self._id("dataset", owner, name)
        streams = [
            {
                "id": self._id("stream", owner, name, k),
                "dataset_id": dataset_id,
                "name": f"{name}-rpa-{k}",
                "title": f"{name} to RPA {k}",
                "description": "",
                "comment_filter": {},
                "model": {
                    "version": 3 + k,
                    "label_thresholds": [{"name": ["Billing", "Refund"], "threshold": 0.62}],
                },
                "created_at": render_ts(EPOCH + dt.timedelta(days=k)),
                "updated_at": render_ts(EPOCH + dt.timedelta(days=k + 5)),
            }
            for k in range(len(sources) + 1)
        ]
        self.datasets[dataset_id] = Dataset(
            id=dataset_id,
            owner=owner,
            name=name,
            title=name.title(),
            source_ids=[s.id for s in sources],
            created=EPOCH - dt.timedelta(days=20),
            labellings=labellings,
            streams=streams,
            model_versions=list(versions),
        )

    # -- changes -----------------------------------------------------------------------

    def change(self, generation: int) -> list[str]:
        """Between two syncs (``Sandbox.change``): a dataset's newest stream is deleted,
        a labelled comment of it loses its labels (it leaves the labellings), and an
        empty source that no dataset uses is deleted (its comments, none, stay)."""
        said: list[str] = []
        dataset = max(self.datasets.values(), key=lambda d: (len(d.streams), d.id))
        if len(dataset.streams) > 1:
            stream = dataset.streams.pop()
            said.append(f"reinfer dataset {dataset.full_name}: stream {stream['name']} deleted")
        for labellings in dataset.labellings.values():
            if labellings:
                lost = labellings.pop(0)
                said.append(
                    f"reinfer dataset {dataset.full_name}: comment {lost.comment.uid} unlabelled"
                )
                break
        used = {sid for d in self.datasets.values() for sid in d.source_ids}
        for source in list(self.sources.values()):
            if source.id not in used and not source.comments:
                del self.sources[source.id]
                said.append(f"reinfer source {source.full_name}: deleted")
                break
        return said

    def advance(self, count: int = 10, sources: list[str] | None = None) -> list[tuple[str, str]]:
        """Add ``count`` new comments to each source (all, or the ``owner/name`` ones),
        timestamped after the newest; returns their ``(source_id, id)``."""
        added = []
        for source in self.sources.values():
            if sources is not None and source.full_name not in sources:
                continue
            newest = source.comments[-1].timestamp if source.comments else EPOCH
            before = len(source.comments)
            self._comments(source, count, newest + dt.timedelta(seconds=1))
            added += [(source.id, c.id) for c in source.comments[before:]]
        return added


# --------------------------------------------------------------------------- the platform


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


#: Maps whose keys are data (typed user properties): no undeclared field goes in there.
_DATA_MAPS = frozenset({"user_properties"})


def _ok(**payload: Any) -> Response:
    body = {name: with_unknown_fields(value, skip=_DATA_MAPS) for name, value in payload.items()}
    return json_response(200, {"status": "ok", **body})


@register_platform
class ReinferPlatform(Platform):
    name = "reinfer"
    base_path = "/reinfer"
    # Nothing is documented; the CLI retries 429, so there is a limit somewhere.
    default_limit = (1200, 60.0)
    limit_window = "rolling"  # no limit is documented, so no window either: the strict form
    limit_retry_after = "none"

    def __init__(self, seed: int, scale: int) -> None:
        self.data = ReinferData(seed, scale)
        self._cursor_secret = _digest("reinfer-cursor", seed, scale)[:16]
        super().__init__(seed, scale)

    @property
    def model(self) -> ReinferData:
        return self.data

    def add_bulk(self, comments: int, per_source: int | None = None) -> dict[str, Any]:
        """Benchmark-sized sources ``acme-support/bulk-1``, ``bulk-2``, ... of at most
        ``per_source`` comments each (one source by default), seeded like the others."""
        data = self.data
        per_source = max(1, per_source or comments)
        sources, left, index = [], comments, 0
        while left > 0:
            index += 1
            name = f"bulk-{index}"
            source = Source(
                id=data._id("source", "acme-support", name),
                owner="acme-support",
                name=name,
                title=f"Acme-Support Bulk {index}",
                kind="chat",
                created_at=EPOCH - dt.timedelta(days=30),
            )
            data.sources[source.id] = source
            # Closer together than the seeded sources', so that even a large count stays
            # in the past (a sync's window ends now).
            data._comments(source, min(per_source, left), EPOCH, max_gap=60)
            # Served from bytes made once, so a page costs the sandbox a join, not an
            # encoding: the benchmark then measures the clients.
            source.frozen = True
            for comment in source.comments:
                source.comment_json(comment)
            sources.append({"source": source.full_name, "comments": len(source.comments)})
            left -= len(source.comments)
        return {"comments": comments, "sources": sources}

    def register_routes(self, router: Router) -> None:
        for prefix in ("", UIPATH_PREFIX):
            routes: list[tuple[str, Callable[[Request], Response]]] = [
                ("/auth/user", self.user),
                ("/api/_private/projects", self.list_projects),
                ("/api/_private/projects/{p}", self.get_project),
                ("/api/v1/datasets", self.list_datasets),
                ("/api/v1/datasets/{p}", self.datasets_of_project),
                ("/api/v1/datasets/{p}/{d}", self.get_dataset),
                ("/api/v1/sources", self.list_sources),
                ("/api/v1/sources/{p}", self.sources_of_project),
                ("/api/v1/sources/{p}/{s}", self.get_source),
                ("/api/_private/sources/{p}/{s}/comments", self.list_comments),
                ("/api/v1/datasets/{p}/{d}/streams", self.list_streams),
                ("/api/v1/datasets/{p}/{d}/streams/{st}", self.get_stream),
                ("/api/_private/datasets/{p}/{d}/labellings", self.list_labellings),
            ]
            for pattern, handler in routes:
                router.get(prefix + pattern, self._api(handler, pattern))
            # Reads sent as POST (a JSON body), as the official client sends them.
            posts: list[tuple[str, Callable[[Request], Response]]] = [
                ("/api/_private/datasets/{p}/{d}/labellers", self.list_labellers),
                ("/api/v1/datasets/{p}/{d}/labellers/{v}/predict-comments", self.predict),
            ]
            for pattern, handler in posts:
                router.post(prefix + pattern, self._api(handler, pattern))

    def _api(
        self, handler: Callable[[Request], Response], pattern: str
    ) -> Callable[[Request], Response]:
        private = pattern.startswith("/api/_private/")

        def serve(req: Request) -> Response:
            if private and not self.data.private_routes:
                return self.not_found(req)
            try:
                return handler(req)
            except ApiError as exc:
                return self.error(exc.status, exc.message)

        return serve

    # -- framework hooks ---------------------------------------------------------------

    def identify(self, req: Request) -> Identity:
        auth = req.header("authorization") or ""
        scheme, _, token = auth.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return Identity(key="anonymous", ok=False)
        token = token.strip()
        return Identity(key=f"token:{token}", ok=token == TOKEN)

    def error(
        self,
        status: int,
        message: str,
        description: str | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> Response:
        return json_response(status, {"status": "error", "message": message}, headers)

    def unauthorized(self, req: Request) -> Response:
        return self.error(401, "401 Unauthorized: the API token is missing, invalid or expired")

    def not_found(self, req: Request) -> Response:
        return self.error(404, "404 Not Found")

    def method_not_allowed(self, req: Request, allowed: list[str]) -> Response:
        return self.error(405, "405 Method Not Allowed", headers=[("Allow", ", ".join(allowed))])

    def internal_error(self, req: Request, exc: BaseException) -> Response:
        return self.error(500, "500 Internal Server Error")

    def forced_error(self, req: Request, status: int) -> Response:
        return self.error(status, f"{status} {reason_phrase(status)}")

    def over_limit(self, req: Request, verdict: Verdict) -> Response:
        return self.error(429, "429 Too Many Requests")

    def is_read_only(self, req: Request) -> bool:
        # Model versions and predictions are reads, though sent as POST.
        return req.method in ("GET", "HEAD") or req.path.endswith(
            ("/labellers", "/predict-comments")
        )

    def decorate(self, req: Request, resp: Response) -> None:
        took = max(0.1, (time.time() - req.now) * 1000)
        resp.set_header("Server-Timing", f"total;dur={took:.1f}")

    # -- helpers -----------------------------------------------------------------------

    def _source(self, req: Request) -> Source:
        source = self.data.source_named(req.params["p"], req.params["s"])
        if source is None:
            raise ApiError(404, f"Source '{req.params['p']}/{req.params['s']}' does not exist")
        return source

    def _dataset(self, req: Request) -> Dataset:
        dataset = self.data.dataset_named(req.params["p"], req.params["d"])
        if dataset is None:
            raise ApiError(404, f"Dataset '{req.params['p']}/{req.params['d']}' does not exist")
        return dataset

    def _project(self, name: str) -> dict[str, Any]:
        project = next((p for p in self.data.projects if p["name"] == name), None)
        if project is None:
            raise ApiError(404, f"Project '{name}' does not exist")
        return project

    def _limit(self, req: Request, default: int, maximum: int) -> int:
        raw = req.arg("limit")
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ApiError(400, f"Invalid limit '{raw}': expected an integer") from None
        if not 1 <= value <= maximum:
            raise ApiError(400, f"Invalid limit {value}: must be between 1 and {maximum}")
        return value

    def _timestamp(self, req: Request, name: str) -> dt.datetime | None:
        raw = req.arg(name)
        if raw is None or raw == "":
            return None
        try:
            return parse_ts(raw)
        except ValueError:
            raise ApiError(400, f"Invalid {name} '{raw}': expected an RFC 3339 timestamp") from None

    def _encode(self, kind: str, scope: str, position: str) -> str:
        check = _digest(self._cursor_secret, kind, scope, position)[:10]
        raw = f"{kind}|{scope}|{position}|{check}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _decode(self, kind: str, scope: str, token: str) -> str:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            got_kind, got_scope, position, check = raw.rsplit("|", 3)
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "Invalid continuation") from None
        expected = _digest(self._cursor_secret, kind, scope, position)[:10]
        if got_kind != kind or got_scope != scope or check != expected:
            raise ApiError(400, "Invalid continuation")
        return position

    # -- handlers ----------------------------------------------------------------------

    def user(self, req: Request) -> Response:
        permissions = {p["name"]: ["sources-read", "datasets-read"] for p in self.data.projects}
        return _ok(
            user={
                "id": "u0000000000000001",
                "username": "sandbox",
                "email": "sandbox@example.com",
                "organisation_permissions": permissions,
            }
        )

    def list_projects(self, req: Request) -> Response:
        return _ok(projects=list(self.data.projects))

    def get_project(self, req: Request) -> Response:
        return _ok(project=self._project(req.params["p"]))

    def list_datasets(self, req: Request) -> Response:
        return _ok(datasets=[d.to_json() for d in self.data.datasets.values()])

    def datasets_of_project(self, req: Request) -> Response:
        name = req.params["p"]
        if name.startswith("id:"):
            dataset = self.data.datasets.get(name[3:])
            if dataset is None:
                raise ApiError(404, f"Dataset with id '{name[3:]}' does not exist")
            return _ok(dataset=dataset.to_json())
        self._project(name)
        return _ok(datasets=[d.to_json() for d in self.data.datasets.values() if d.owner == name])

    def get_dataset(self, req: Request) -> Response:
        return _ok(dataset=self._dataset(req).to_json())

    def list_sources(self, req: Request) -> Response:
        return _ok(sources=[s.to_json() for s in self.data.sources.values()])

    def sources_of_project(self, req: Request) -> Response:
        name = req.params["p"]
        if name.startswith("id:"):
            source = self.data.sources.get(name[3:])
            if source is None:
                raise ApiError(404, f"Source with id '{name[3:]}' does not exist")
            return _ok(source=source.to_json())
        self._project(name)
        return _ok(sources=[s.to_json() for s in self.data.sources.values() if s.owner == name])

    def get_source(self, req: Request) -> Response:
        return _ok(source=self._source(req).to_json())

    def list_comments(self, req: Request) -> Response:
        source = self._source(req)
        limit = self._limit(req, DEFAULT_COMMENT_LIMIT, MAX_COMMENT_LIMIT)
        upper = self._timestamp(req, "to_timestamp")
        after = req.arg("after")
        if after:
            # The position is the sort key of the last comment served, so comments added
            # meanwhile never shift a page.
            ts_text, _, last_id = self._decode("comments", source.id, after).partition(" ")
            start = bisect.bisect_right(source.keys, (parse_ts(ts_text), last_id))
        else:
            lower = self._timestamp(req, "from_timestamp")
            start = 0 if lower is None else bisect.bisect_left(source.keys, (lower, ""))
        end = len(source.keys)
        if upper is not None:
            end = bisect.bisect_left(source.keys, (upper + dt.timedelta(microseconds=1), ""))
        page = source.comments[start : min(start + limit, end)]
        continuation = None
        if page and start + len(page) < end:
            last = page[-1]
            continuation = self._encode(
                "comments", source.id, f"{render_ts(last.timestamp)} {last.id}"
            )
        if source.frozen:
            body = b'{"status":"ok","comments":[%s],"continuation":%s}' % (
                b",".join(source.comment_json(c) for c in page),
                json.dumps(continuation).encode("utf-8"),
            )
            return Response(200, body)
        return _ok(comments=[c.to_json() for c in page], continuation=continuation)

    def list_streams(self, req: Request) -> Response:
        return _ok(streams=list(self._dataset(req).streams))

    def get_stream(self, req: Request) -> Response:
        dataset = self._dataset(req)
        stream = next((s for s in dataset.streams if s["name"] == req.params["st"]), None)
        if stream is None:
            raise ApiError(404, f"Stream '{req.params['st']}' does not exist")
        return _ok(stream=stream)

    def list_labellings(self, req: Request) -> Response:
        dataset = self._dataset(req)
        source_id = req.arg("source_id")
        if not source_id:
            raise ApiError(400, "Missing source_id")
        if source_id not in dataset.source_ids:
            raise ApiError(400, f"Source '{source_id}' is not part of {dataset.full_name}")
        limit = self._limit(req, DEFAULT_LABELLING_LIMIT, MAX_LABELLING_LIMIT)
        items = dataset.labellings.get(source_id, [])
        after = req.arg("after")
        scope = f"{dataset.id}:{source_id}"
        start = int(self._decode("labellings", scope, after)) if after else 0
        page = items[start : start + limit]
        predictions = (req.arg("return_predictions") or "").lower() == "true"
        # `after` on every page, the empty last one included: only an empty page ends.
        token = self._encode("labellings", scope, str(start + len(page)))
        return _ok(results=[lab.to_json(predictions) for lab in page], after=token)

    def _body(self, req: Request) -> dict[str, Any]:
        try:
            body = req.json()
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "Request body is not valid JSON") from None
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise ApiError(400, "Request body must be a JSON object")
        return body

    def list_labellers(self, req: Request) -> Response:
        dataset = self._dataset(req)
        self._body(req)
        return _ok(
            labellers=[
                {"version": v, "dataset_id": dataset.id, "model_family": "english"}
                for v in dataset.model_versions
            ]
        )

    def predict(self, req: Request) -> Response:
        dataset = self._dataset(req)
        raw = req.params["v"]
        if not raw.isdigit() or int(raw) not in dataset.model_versions:
            raise ApiError(404, f"Model version '{raw}' of {dataset.full_name} does not exist")
        body = self._body(req)
        uids = body.get("uids")
        if not isinstance(uids, list) or not all(isinstance(u, str) for u in uids):
            raise ApiError(400, "Field 'uids' must be a list of comment uids")
        most = self.data.max_predict_uids
        if len(uids) > most:
            raise ApiError(400, f"Too many uids: {len(uids)} given, at most {most} per request")
        threshold = body.get("threshold")
        if threshold is not None and threshold != "auto" and type(threshold) not in (int, float):
            raise ApiError(400, "Field 'threshold' must be \"auto\" or a number")
        version = int(raw)
        predictions = []
        for uid in uids:
            comment = self.data.comment_by_uid(dataset, uid)
            if comment is not None:  # not a comment of this dataset: nothing scored
                predictions.append(self.data.prediction(dataset, version, comment))
        # The order of the answer is not documented (the CLI pairs by position): served
        # shuffled, so only matching by uid pairs a prediction with its comment.
        random.Random(_digest("order", *uids)).shuffle(predictions)
        return _ok(predictions=predictions)
