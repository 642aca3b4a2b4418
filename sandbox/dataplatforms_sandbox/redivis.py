"""Redivis REST API v1, as documented (shared/apis/redivis.md, docs.redivis.com).

Served under ``/redivis/api/v1``:

- ``GET /organizations/{org}/datasets``, ``GET /users/{user}/datasets`` (``labels`` on orgs)
- ``GET /datasets/{datasetRef}``, ``GET /datasets/{datasetRef}/versions``
- ``GET /datasets/{datasetRef}/tables``
- ``GET /tables/{tableRef}``, ``GET /tables/{tableRef}/variables``,
  ``GET /tables/{tableRef}/variables/{name}``
- ``GET /`` (the base URL): a small OpenAPI description, no credentials needed

Modelled behaviour: Bearer token (401 otherwise); lists ``{kind, nextPageToken, results}``
with ``maxResults`` (default 100, 1..1000, else 400) and an opaque, list-bound ``pageToken``
(400 when invalid); references as one percent-encoded segment in every documented form,
names case-insensitive, version tags validated; 404 for what does not exist *or may not be
seen*; an OAuth-style 403 ``insufficient_scope`` when the caller's access to a dataset is
only ``overview`` (its tables and variables are out of reach); ``X-RateLimit-*`` on every
response (reset in epoch ms) and ``Retry-After`` in epoch ms on 429; ``X-Redivis-Warning``
for a deprecated ``access_token`` parameter and for a reference whose name disagrees with its
reference id; errors of HEAD requests in ``X-Redivis-Error-Payload``.

The seeded token belongs to the user ``jdoe``, who may edit their own datasets (and so see
their unreleased ``next`` versions).
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

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
from .redivis_rows import ArrowBody, ReadSessions
from .shapes import with_unknown_fields

TOKEN = CREDENTIALS["redivis"]["token"]
TOKEN_USER = "jdoe"
WEB = "https://redivis.com"
VARIABLE_TYPES = ("boolean", "integer", "float", "string", "date", "dateTime", "time", "geography")
ACCESS_ORDER = ("none", "overview", "metadata", "data", "edit")
DEFAULT_MAX_RESULTS = 100
MAX_MAX_RESULTS = 1000

_VERSION_TAG = re.compile(r"v(\d+)_(\d+)", re.IGNORECASE)
_REFERENCE_ID = re.compile(r"[a-z0-9]{4}", re.IGNORECASE)
_REF_ALPHABET = "abcdefghjkmnpqrstvwxyz0123456789"
_ID_ALPHABET = "abcdefghjkmnpqrstvwxyz0123456789"


def reference_name(name: str) -> str:
    """Names appear in references with every character other than a letter, a digit or an
    underscore written as ``_`` (doc)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


# --------------------------------------------------------------------------- data model


@dataclass
class Owner:
    kind: str  # "organization" | "user"
    name: str

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name}


@dataclass
class Version:
    tag: str  # reference form, "v1_0"
    index: int  # 0 = first version
    is_released: bool
    created_at: int
    updated_at: int
    released_at: int | None

    @property
    def display_tag(self) -> str:
        return self.tag.replace("_", ".")


@dataclass
class Variable:
    name: str
    type: str
    index: int
    label: str | None
    description: str
    value_labels: list[dict[str, str]]
    is_file_id: bool = False


@dataclass
class Table:
    reference_id: str
    name: str
    description: str
    num_rows: int
    num_bytes: int
    created_at: int
    updated_at: int
    upload_merge_strategy: str
    first_version: int  # index of the first version holding the table
    variables: list[Variable]
    temporal_range: dict[str, str] | None
    geo_bbox: dict[str, float] | None
    dataset: Dataset = field(repr=False)
    is_file_index: bool = False

    def id_in(self, version: Version, sample: bool = False) -> str:
        digest = _digest(self.dataset.id, self.reference_id, version.tag, sample)
        return f"{self.reference_id}-{digest[:8]}"

    def qualified_reference_in(self, version: Version, sample: bool = False) -> str:
        return (
            f"{self.dataset.reference_in(version, sample, explicit_version=True)}"
            f".{reference_name(self.name)}:{self.reference_id}"
        )

    @property
    def qualified_reference(self) -> str:
        """In the dataset's current version, as listings return it."""
        return self.qualified_reference_in(self.dataset.current_version)

    @property
    def scoped_reference(self) -> str:
        return f"{reference_name(self.name)}:{self.reference_id}"

    @property
    def variable_count(self) -> int:
        return len(self.variables)


@dataclass
class Dataset:
    id: str
    reference_id: str
    name: str
    owner: Owner
    description: str
    labels: list[str]
    access_level: str  # the seeded token's access
    public_access_level: str
    created_at: int
    updated_at: int
    versions: list[Version]
    doi: str | None
    temporal_range: dict[str, str] | None
    temporal_precision: str | None
    geo_bbox: dict[str, float] | None
    sample_configuration: dict[str, Any] | None
    listed: bool = True
    tables: list[Table] = field(default_factory=list)  # across all versions

    @property
    def current_version(self) -> Version:
        return [v for v in self.versions if v.is_released][-1]

    @property
    def next_version(self) -> Version | None:
        unreleased = [v for v in self.versions if not v.is_released]
        return unreleased[0] if unreleased else None

    @property
    def qualified_reference(self) -> str:
        return f"{self.owner.name}.{self.scoped_reference}"

    @property
    def scoped_reference(self) -> str:
        return f"{reference_name(self.name)}:{self.reference_id}"

    def reference_in(self, version: Version | None, sample: bool, explicit_version: bool) -> str:
        ref = self.qualified_reference + (":sample" if sample else "")
        if explicit_version and version is not None:
            ref += f":{version.tag}"
        return ref

    def tables_in(self, version: Version) -> list[Table]:
        return [t for t in self.tables if t.first_version <= version.index]

    @property
    def current_tables(self) -> list[Table]:
        return self.tables_in(self.current_version)

    def may(self, level: str) -> bool:
        return ACCESS_ORDER.index(self.access_level) >= ACCESS_ORDER.index(level)


def _digest(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()


# --------------------------------------------------------------------------- seeding

_DEMO_NAMES = (
    "cms_synthetic_patient_data_omop",
    "ghcn_daily_weather",
    "us_county_population",
    "World Development Indicators",
    "open_payments",
    "nyc_taxi_trips",
    "covid_19_case_surveillance",
    "medicare_part_d_prescribers",
    "epa_air_quality",
    "noaa_storm_events",
    "usda_crop_yields",
    "fda_adverse_events",
    "bls_employment_statistics",
    "global_energy_prices",
    "us_fatal_accidents",
    "american_community_survey",
)
_DEMO_LABELS = ("health", "climate", "economics", "transport", "demographics", "energy", "safety")
_TABLE_NAMES = (
    "person",
    "observations",
    "visits",
    "drug_era",
    "stations",
    "daily_readings",
    "counties",
    "prices",
    "trips",
    "indicators",
    "events",
    "providers",
    "claims",
    "measurements",
    "households",
    "locations",
    "payments",
    "samples",
    "summary",
    "codebook",
)
_VARIABLE_NAMES = {
    "integer": ("count", "year", "population", "num_units", "age", "rank", "code"),
    "float": ("amount", "value", "rate", "temperature_c", "share", "price", "weight"),
    "string": ("name", "category", "state_code", "status", "source", "notes", "region"),
    "boolean": ("is_active", "flagged", "is_imputed", "is_valid", "verified"),
    "date": ("event_date", "start_date", "end_date", "report_date", "birth_date"),
    "dateTime": ("updated_at", "recorded_at", "created_at", "loaded_at"),
    "time": ("start_time", "observed_time", "end_time", "local_time"),
    "geography": ("geom", "location", "boundary", "centroid"),
}
_CENSUS_TOPICS = (
    "population",
    "housing",
    "agriculture",
    "manufactures",
    "mortality",
    "occupations",
    "pums_sample",
)
_JDOE_NAMES = ("us_county_population", "thesis_survey_responses", "Scratch Joins 2024")

_T0 = 1_546_300_800_000  # 2019-01-01T00:00:00Z in ms
_DAY = 86_400_000


class RedivisData:
    """The seeded Redivis world, deterministic for (seed, scale).

    - ``owners``: owner name -> :class:`Owner`
    - ``datasets_by_owner``: owner name -> datasets the list endpoints return, in order
    - ``hidden_datasets``: datasets that exist but the token may not see (always 404)
    - ``tables_by_dataset``: dataset id -> tables of the current version (unversioned refs)
    - ``variables_by_table``: table ``qualifiedReference`` (current version) -> variables

    ``tables_by_dataset`` also holds the tables of the one ``demo`` dataset whose
    ``access_level`` is ``overview``: the API refuses them with a 403 ``insufficient_scope``.
    The objects are shared with the server; treat them as read-only.
    """

    def __init__(self, seed: int, scale: int) -> None:
        self.seed = seed
        self.scale = scale
        self._rng = random.Random(f"redivis/{seed}/{scale}")
        self._refs: set[str] = set()
        self.owners: dict[str, Owner] = {
            "demo": Owner("organization", "demo"),
            "census_archive": Owner("organization", "census_archive"),
            "jdoe": Owner("user", "jdoe"),
        }
        self.datasets_by_owner: dict[str, list[Dataset]] = {name: [] for name in self.owners}
        self.hidden_datasets: list[Dataset] = []
        self._seed_demo()
        self._seed_census()
        self._seed_jdoe()
        self.tables_by_dataset: dict[str, list[Table]] = {
            ds.id: ds.current_tables for ds in self.all_datasets
        }
        self.variables_by_table: dict[str, list[Variable]] = {
            t.qualified_reference: t.variables
            for ds in self.all_datasets
            for t in ds.current_tables
        }

    def change(self, table: Table) -> list[str]:
        """Between two syncs (``Sandbox.change``): ``table``'s dataset releases a new
        version in which the table has a new variable and half its rows."""
        ds = table.dataset
        major = max(int(v.tag[1:].split("_")[0]) for v in ds.versions) + 1
        at = max(v.updated_at for v in ds.versions) + _DAY
        version = Version(f"v{major}_0", len(ds.versions), True, at, at, at)
        ds.versions.append(version)
        ds.updated_at = at
        name = f"added_in_v{major}"
        table.variables.append(
            Variable(name, "string", len(table.variables), None, f"{name} (string)", [])
        )
        lost = table.num_rows - table.num_rows // 2
        table.num_rows -= lost
        table.updated_at = at
        self.tables_by_dataset[ds.id] = ds.current_tables
        self.variables_by_table = {
            t.qualified_reference: t.variables for d in self.all_datasets for t in d.current_tables
        }
        return [
            f"redivis dataset {ds.qualified_reference}: version {version.display_tag} released",
            f"redivis table {table.name}: variable {name} added, {lost} rows fewer",
        ]

    # -- queries -------------------------------------------------------------------------

    @property
    def all_datasets(self) -> list[Dataset]:
        listed = [ds for datasets in self.datasets_by_owner.values() for ds in datasets]
        return listed + self.hidden_datasets

    def owner(self, name: str) -> Owner | None:
        return self.owners.get(name.lower())

    def datasets_of(self, owner: Owner, include_hidden: bool = False) -> list[Dataset]:
        datasets = list(self.datasets_by_owner[owner.name])
        if include_hidden:
            datasets += [ds for ds in self.hidden_datasets if ds.owner is owner]
        return datasets

    def dataset(self, qualified_reference: str) -> Dataset:
        """Look a dataset up by its exact (unversioned) ``qualifiedReference``."""
        for ds in self.all_datasets:
            if ds.qualified_reference == qualified_reference:
                return ds
        raise KeyError(qualified_reference)

    # -- generation ----------------------------------------------------------------------

    def _ref_id(self) -> str:
        while True:
            ref = "".join(self._rng.choice(_REF_ALPHABET) for _ in range(4))
            # a reference id always holds a digit, so it is never mistaken for "next" etc.
            if any(c.isdigit() for c in ref) and ref not in self._refs:
                self._refs.add(ref)
                return ref

    def _versions(self, created: int, released: int, with_next: bool) -> list[Version]:
        rng = self._rng
        versions: list[Version] = []
        t = created + rng.randint(1, 20) * _DAY
        major, minor = 1, 0
        for index in range(released + (1 if with_next else 0)):
            if index > 0:
                if rng.random() < 0.3:
                    minor += 1
                else:
                    major, minor = major + 1, 0
            is_released = index < released
            made = t
            t += rng.randint(20, 110) * _DAY
            released_at = made + rng.randint(1, 10) * _DAY if is_released else None
            versions.append(
                Version(
                    tag=f"v{major}_{minor}",
                    index=index,
                    is_released=is_released,
                    created_at=made,
                    updated_at=(released_at or made + rng.randint(1, 5) * _DAY)
                    + rng.randint(0, _DAY),
                    released_at=released_at,
                )
            )
        return versions

    def _variables(self, table_name: str, count: int) -> list[Variable]:
        rng = self._rng
        types = list(VARIABLE_TYPES)
        rng.shuffle(types)
        used = {f"{table_name}_id"}
        variables = [Variable(f"{table_name}_id", "integer", 0, "Identifier", "Row identifier", [])]
        for index in range(1, count):
            vtype = types[index - 1] if index - 1 < len(types) else rng.choice(types)
            candidates = [n for n in _VARIABLE_NAMES[vtype] if n not in used]
            name = rng.choice(candidates) if candidates else f"{vtype.lower()}_{index}"
            used.add(name)
            labelled = rng.random() < 0.5
            value_labels: list[dict[str, str]] = []
            if vtype == "string" and name in ("category", "status"):
                value_labels = [
                    {"value": "A", "label": "Active"},
                    {"value": "I", "label": "Inactive"},
                ]
            variables.append(
                Variable(
                    name=name,
                    type=vtype,
                    index=index,
                    label=name.replace("_", " ").capitalize() if labelled else None,
                    description=f"{name.replace('_', ' ')} ({vtype})",
                    value_labels=value_labels,
                )
            )
        return variables

    def _table(
        self, ds: Dataset, name: str, first_version: int, num_variables: int | None = None
    ) -> Table:
        rng = self._rng
        version = ds.versions[first_version]
        created = version.created_at + rng.randint(0, 3 * _DAY)
        variables = self._variables(name, num_variables or rng.randint(4, 12))
        num_rows = 0 if rng.random() < 0.08 else rng.randint(1, 2_500_000)
        temporal = None
        if rng.random() < 0.3:
            start = 1990 + rng.randint(0, 20)
            temporal = {"min": f"{start}-01-01", "max": f"{start + rng.randint(1, 12)}-12-31"}
        table = Table(
            reference_id=self._ref_id(),
            name=name,
            description=f"{name.replace('_', ' ').capitalize()} of {ds.name}",
            num_rows=num_rows,
            num_bytes=num_rows * len(variables) * rng.randint(4, 16),
            created_at=created,
            updated_at=created + rng.randint(0, 30 * _DAY),
            upload_merge_strategy=rng.choice(("append", "append", "replace")),
            first_version=first_version,
            variables=variables,
            temporal_range=temporal,
            geo_bbox=ds.geo_bbox,
            dataset=ds,
        )
        ds.tables.append(table)
        return table

    def _dataset(
        self,
        owner: Owner,
        name: str,
        *,
        labels: list[str],
        access_level: str,
        public_access_level: str,
        released: int,
        with_next: bool = False,
        listed: bool = True,
        sample: bool = False,
    ) -> Dataset:
        rng = self._rng
        created = _T0 + rng.randint(0, 1500) * _DAY + rng.randint(0, _DAY)
        versions = self._versions(created, released, with_next)
        ref = self._ref_id()
        geo = None
        if any(word in name.lower() for word in ("weather", "county", "air", "storm")):
            geo = {"west": -124.85, "south": 24.4, "east": -66.88, "north": 49.38}
        temporal = None
        if rng.random() < 0.5:
            start = 1950 + rng.randint(0, 60)
            temporal = {"min": f"{start}-01-01", "max": f"{start + rng.randint(5, 30)}-12-31"}
        ds = Dataset(
            id=f"{ref}-{''.join(rng.choice(_ID_ALPHABET) for _ in range(8))}",
            reference_id=ref,
            name=name,
            owner=owner,
            description=f"{name.replace('_', ' ')}, published by {owner.name}",
            labels=labels,
            access_level=access_level,
            public_access_level=public_access_level,
            created_at=created,
            updated_at=max(v.updated_at for v in versions) + rng.randint(0, 5 * _DAY),
            versions=versions,
            doi=f"10.57761/{ref}-{rng.randint(1000, 9999)}" if rng.random() < 0.3 else None,
            temporal_range=temporal,
            temporal_precision="day" if temporal else None,
            geo_bbox=geo,
            sample_configuration={"type": "random", "samplePercentage": 1} if sample else None,
            listed=listed,
        )
        if listed:
            self.datasets_by_owner[owner.name].append(ds)
        else:
            self.hidden_datasets.append(ds)
        return ds

    def _tables_for(self, ds: Dataset, count: int, force_wide: bool = False) -> None:
        rng = self._rng
        names = rng.sample(_TABLE_NAMES, count + 1)
        released = [v for v in ds.versions if v.is_released]
        for position, name in enumerate(names[:count]):
            first = 0
            # a table added by the latest release is absent from older versions
            if position == count - 1 and count > 1 and len(released) > 1 and rng.random() < 0.5:
                first = released[-1].index
            self._table(ds, name, first, 12 if force_wide and position == 0 else None)
        if ds.next_version is not None:
            self._table(ds, names[count], ds.next_version.index)  # only in "next"

    def _seed_demo(self) -> None:
        rng = self._rng
        owner = self.owners["demo"]
        for i in range(12 * self.scale):
            base = _DEMO_NAMES[i % len(_DEMO_NAMES)]
            name = base if i < len(_DEMO_NAMES) else f"{base}_{i // len(_DEMO_NAMES) + 1}"
            access = (
                "overview" if i == 4 else ("data" if i < 4 else rng.choice(("data", "metadata")))
            )
            ds = self._dataset(
                owner,
                name,
                labels=sorted(rng.sample(_DEMO_LABELS, rng.randint(0, 2))),
                access_level=access,
                public_access_level="overview"
                if access == "overview"
                else rng.choice(("overview", "metadata", "data")),
                released=rng.randint(1, 3),
                sample=i == 1,
            )
            self._tables_for(ds, rng.randint(1, 3), force_wide=i == 0)
        hidden = self._dataset(
            owner,
            "restricted_claims_extract",
            labels=["health"],
            access_level="none",
            public_access_level="none",
            released=1,
            listed=False,
        )
        self._tables_for(hidden, 2)

    def _seed_census(self) -> None:
        rng = self._rng
        owner = self.owners["census_archive"]
        per_round = 24 * len(_CENSUS_TOPICS)
        for i in range(150 * self.scale):
            year = 1790 + 10 * (i % 24)
            topic = _CENSUS_TOPICS[(i // 24) % len(_CENSUS_TOPICS)]
            part = i // per_round
            name = f"census_{year}_{topic}" + (f"_part_{part + 1}" if part else "")
            ds = self._dataset(
                owner,
                name,
                labels=["census", "historical"],
                access_level="data",
                public_access_level="data",
                released=1,
            )
            if i < 3:
                self._tables_for(ds, rng.randint(1, 3))

    def add_bulk_datasets(self, count: int) -> dict[str, Any]:
        """``count`` more ``demo`` datasets of three tables each (metadata access or
        more); returns what listing ``demo`` then yields: datasets, the tables of those
        with metadata access, and those tables' variables."""
        owner = self.owners["demo"]
        rng = self._rng
        for i in range(count):
            ds = self._dataset(
                owner,
                f"bulk_metadata_{i + 1}",
                labels=[],
                access_level=rng.choice(("metadata", "data")),
                public_access_level="metadata",
                released=1,
            )
            self._tables_for(ds, 3)
        listed = self.datasets_of(owner)
        tables = [t for ds in listed if ds.may("metadata") for t in ds.current_tables]
        return {
            "owner": owner.name,
            "datasets": len(listed),
            "tables": len(tables),
            "variables": sum(len(t.variables) for t in tables),
        }

    def _seed_jdoe(self) -> None:
        rng = self._rng
        owner = self.owners["jdoe"]
        for i, name in enumerate(_JDOE_NAMES):
            ds = self._dataset(
                owner,
                name,
                labels=[],
                access_level="edit",
                public_access_level="none",
                released=rng.randint(1, 2),
                with_next=i < 2,
            )
            self._tables_for(ds, rng.randint(1, 3))

    # -- JSON views ----------------------------------------------------------------------

    def dataset_json(
        self,
        ds: Dataset,
        *,
        detail: bool = False,
        version: Version | None = None,
        sample: bool = False,
    ) -> dict[str, Any]:
        """A dataset as the list endpoints (``detail=False``) or ``GET /datasets/{ref}``
        return it; ``version`` is the explicitly referenced version, if any."""
        effective = version or ds.current_version
        tables = ds.tables_in(effective)
        qualified = ds.reference_in(version, sample, explicit_version=version is not None)
        scoped = qualified.split(".", 1)[1]
        all_bytes = sum(t.num_bytes for v in ds.versions if v.is_released for t in ds.tables_in(v))
        out: dict[str, Any] = {
            "kind": "dataset",
            "id": ds.id,
            "qualifiedReference": qualified,
            "scopedReference": scoped,
            "referenceId": ds.reference_id,
            "name": ds.name,
            "url": f"{WEB}/datasets/{ds.id}",
            "uri": f"/datasets/{qualified}",
            "doi": ds.doi,
            "owner": ds.owner.to_json(),
            "description": ds.description,
            "labels": list(ds.labels),
            "accessLevel": ds.access_level,
            "publicAccessLevel": ds.public_access_level,
            "createdAt": ds.created_at,
            "updatedAt": ds.updated_at,
            "tableCount": len(tables),
            "numBytes": sum(t.num_bytes for t in tables),
            "totalNumBytes": all_bytes,
            "temporalRange": ds.temporal_range,
            "temporalPrecision": ds.temporal_precision,
            "geoBBox": ds.geo_bbox,
            "sampleConfiguration": ds.sample_configuration,
        }
        if detail:
            nxt = ds.next_version if ds.may("edit") else None
            out.update(
                {
                    "methodologyMarkdown": f"## Methodology\n\nCompiled by {ds.owner.name}.",
                    "usageMarkdown": "Cite the dataset when you use it.",
                    "contactInfo": f"data@{ds.owner.name.replace('_', '-')}.example.org",
                    "links": [{"label": "Homepage", "url": f"{WEB}/datasets/{ds.id}"}],
                    "nextVersion": (
                        {"datasetUri": f"/datasets/{ds.qualified_reference}:next"}
                        if nxt is not None
                        else None
                    ),
                }
            )
        return with_unknown_fields(out)

    def version_json(self, ds: Dataset, version: Version) -> dict[str, Any]:
        return with_unknown_fields(
            {
                "kind": "version",
                "tag": version.display_tag,
                "index": version.index,
                "isReleased": version.is_released,
                "isDeleted": False,
                "datasetUri": f"/datasets/{ds.qualified_reference}:{version.tag}",
                "createdAt": version.created_at,
                "updatedAt": version.updated_at,
                "releasedAt": version.released_at,
            }
        )

    def table_json(
        self,
        table: Table,
        version: Version | None = None,
        *,
        sample: bool = False,
        detail: bool = False,
    ) -> dict[str, Any]:
        ds = table.dataset
        version = version or ds.current_version
        qualified = table.qualified_reference_in(version, sample)
        table_id = table.id_in(version, sample)
        num_rows = math.ceil(table.num_rows / 100) if sample else table.num_rows
        num_bytes = math.ceil(table.num_bytes / 100) if sample else table.num_bytes
        out: dict[str, Any] = {
            "kind": "table",
            "id": table_id,
            "uri": f"/tables/{qualified}",
            "url": f"{WEB}/datasets/{ds.id}/tables/{table_id}",
            "qualifiedReference": qualified,
            "scopedReference": table.scoped_reference,
            "referenceId": table.reference_id,
            "name": table.name,
            "hash": _digest(table_id, "hash")[:6],
            "isSample": sample,
            "isFileIndex": table.is_file_index,
            "createdAt": table.created_at,
            "updatedAt": table.updated_at,
            "description": table.description,
            "numRows": num_rows,
            "numBytes": num_bytes,
            "uploadMergeStrategy": table.upload_merge_strategy,
            "variableCount": table.variable_count,
        }
        if detail:
            container_ref = ds.reference_in(version, sample, explicit_version=True)
            out.update(
                {
                    "canDownload": ds.may("data"),
                    "temporalRange": table.temporal_range,
                    "geoBBox": table.geo_bbox,
                    "accessLevel": ds.access_level,
                    "container": {
                        "kind": "dataset",
                        "id": ds.id,
                        "name": ds.name,
                        "qualifiedReference": container_ref,
                        "uri": f"/datasets/{container_ref}",
                    },
                }
            )
        return with_unknown_fields(out)

    def variable_json(
        self,
        table: Table,
        variable: Variable,
        table_ref: str | None = None,
        *,
        detail: bool = False,
    ) -> dict[str, Any]:
        table_ref = table_ref or table.qualified_reference
        out: dict[str, Any] = {
            "kind": "variable",
            "uri": f"/tables/{table_ref}/variables/{variable.name}",
            "url": f"{WEB}/datasets/{table.dataset.id}/tables/{table.reference_id}"
            f"?variable={variable.name}",
            "name": variable.name,
            "type": variable.type,
            "isFileId": variable.is_file_id,
            "index": variable.index,
            "label": variable.label,
        }
        if detail:
            out["description"] = variable.description
            out["valueLabels"] = [dict(v) for v in variable.value_labels]
        return with_unknown_fields(out)


# --------------------------------------------------------------------------- references


class ApiError(Exception):
    def __init__(self, status: int, message: str, description: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.description = description


class InsufficientScope(Exception):
    """403 in the OAuth shape the current clients read (``error``/``error_description``)."""

    def __init__(self, description: str, scope: str) -> None:
        super().__init__(description)
        self.description = description
        self.scope = scope


@dataclass
class DatasetRef:
    owner: str
    name: str
    reference_id: str | None = None
    sample: bool = False
    version: str | None = None


@dataclass
class TableRef:
    dataset: DatasetRef
    name: str
    reference_id: str | None = None


def _parse_qualifiers(text: str, allow: set[str], what: str) -> tuple[str, dict[str, str]]:
    name, *tokens = text.split(":")
    found: dict[str, str] = {}
    if not name:
        raise ApiError(400, f"Invalid {what} reference", f"Missing name in '{text}'")
    for token in tokens:
        lower = token.lower()
        if lower == "sample":
            kind = "sample"
        elif lower in ("current", "next") or _VERSION_TAG.fullmatch(token):
            kind = "version"
        elif _REFERENCE_ID.fullmatch(token):
            kind = "referenceId"
        else:
            raise ApiError(400, f"Invalid {what} reference", f"Unexpected qualifier ':{token}'")
        if kind not in allow or kind in found:
            raise ApiError(400, f"Invalid {what} reference", f"Unexpected qualifier ':{token}'")
        found[kind] = token
    return name, found


def parse_dataset_ref(text: str) -> DatasetRef:
    parts = text.split(".")
    if len(parts) != 2 or not parts[0]:
        raise ApiError(
            400,
            "Invalid dataset reference",
            f"'{text}' is not of the form owner.dataset[:referenceId][:sample][:version]",
        )
    name, found = _parse_qualifiers(parts[1], {"referenceId", "sample", "version"}, "dataset")
    return DatasetRef(
        owner=parts[0],
        name=name,
        reference_id=found.get("referenceId"),
        sample="sample" in found,
        version=found.get("version"),
    )


def parse_table_ref(text: str) -> TableRef:
    parts = text.split(".")
    if len(parts) != 3 or not parts[0]:
        raise ApiError(
            400,
            "Invalid table reference",
            f"'{text}' is not of the form owner.dataset[:referenceId][:sample][:version]"
            ".table[:referenceId]",
        )
    ds_name, ds_found = _parse_qualifiers(parts[1], {"referenceId", "sample", "version"}, "table")
    name, found = _parse_qualifiers(parts[2], {"referenceId"}, "table")
    dataset = DatasetRef(
        owner=parts[0],
        name=ds_name,
        reference_id=ds_found.get("referenceId"),
        sample="sample" in ds_found,
        version=ds_found.get("version"),
    )
    return TableRef(dataset=dataset, name=name, reference_id=found.get("referenceId"))


@dataclass
class Resolved:
    dataset: Dataset
    version: Version
    explicit_version: bool
    sample: bool
    table: Table | None = None


# --------------------------------------------------------------------------- the platform


def _api(fn: Callable[[RedivisPlatform, Request], Response]) -> Callable[..., Response]:
    """Turn ApiError / InsufficientScope raised by a handler into Redivis error answers."""

    def wrapper(self: RedivisPlatform, req: Request) -> Response:
        try:
            return fn(self, req)
        except ApiError as exc:
            return self.error(exc.status, exc.message, exc.description)
        except InsufficientScope as exc:
            return self.insufficient_scope(exc.description, exc.scope)

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


@register_platform
class RedivisPlatform(Platform):
    name = "redivis"
    base_path = "/redivis/api/v1"
    default_limit = (1000, 60.0)  # "roughly 1,000 requests per 60-second interval" (doc)
    rate_limit_headers = True
    reset_encoding = "epoch-ms"
    limit_retry_after = "epoch-ms"  # Retry-After is a point in time in ms (doc)

    _messages = {
        400: "Bad request",
        401: "Invalid credentials",
        403: "Not authorized",
        404: "Not found",
        429: "Rate limit exceeded",
        500: "Internal error",
        503: "Service unavailable",
    }

    def __init__(self, seed: int, scale: int) -> None:
        self.data = RedivisData(seed, scale)
        self._token_secret = _digest("redivis-page-token", seed, scale)[:16]
        # the seeded data never changes, so list views of datasets can be rendered once
        self._dataset_views: dict[str, dict[str, Any]] = {}
        self.read_sessions = ReadSessions(seed)
        super().__init__(seed, scale)

    @property
    def model(self) -> RedivisData:
        return self.data

    def add_bulk(self, rows: int, per_partition: int | None = None) -> dict[str, Any]:
        """Resize the first demo table with a column of every variable type to ``rows``
        (its rows are computed per read, so size costs nothing up front; read streams
        split it). ``per_partition``, if given, is a number of datasets added to the
        ``demo`` organization, three tables each, for metadata-heavy runs; what a sync of
        ``demo`` then lists is under ``metadata``."""
        table = next(
            t
            for ds in self.data.datasets_by_owner["demo"]
            if ds.may("data")
            for t in ds.current_tables
            if len({v.type for v in t.variables}) == 8
        )
        table.num_rows = rows
        info: dict[str, Any] = {"table": table.qualified_reference, "name": table.name}
        info["rows"] = rows
        if per_partition:
            info["metadata"] = self.data.add_bulk_datasets(int(per_partition))
        return info

    def register_routes(self, router: Router) -> None:
        router.get("", self.openapi, public=True)
        router.get("/organizations/{org}/datasets", self.list_org_datasets)
        router.get("/users/{user}/datasets", self.list_user_datasets)
        router.get("/datasets/{datasetRef}", self.get_dataset)
        router.get("/datasets/{datasetRef}/versions", self.list_versions)
        router.get("/datasets/{datasetRef}/tables", self.list_tables)
        router.get("/tables/{tableRef}", self.get_table)
        router.get("/tables/{tableRef}/variables", self.list_variables)
        router.get("/tables/{tableRef}/variables/{name}", self.get_variable)
        router.post("/tables/{tableRef}/readSessions", self.create_read_session)
        router.get("/tables/{tableRef}/rows", self.list_rows)
        router.get("/readStreams/{streamId}", self.read_stream)

    # -- framework hooks -----------------------------------------------------------------

    def identify(self, req: Request) -> Identity:
        auth = req.header("authorization")
        legacy = req.arg("access_token")
        if legacy is not None:
            req.warnings.append(
                "The access_token query parameter is deprecated and will be removed; "
                "send the token in the 'Authorization: Bearer' header instead."
            )
        if auth is not None:
            scheme, _, credential = auth.strip().partition(" ")
            if scheme.lower() != "bearer" or not credential.strip():
                req.context["auth_problem"] = "malformed"
                return Identity(key=f"malformed:{auth}", ok=False)
            token = credential.strip()
        elif legacy:
            token = legacy
        else:
            req.context["auth_problem"] = "missing"
            return Identity(key="anonymous", ok=False)
        if token != TOKEN:
            req.context["auth_problem"] = "invalid"
        return Identity(key=f"token:{token}", ok=token == TOKEN)

    def error(
        self,
        status: int,
        message: str,
        description: str | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> Response:
        body: dict[str, Any] = {"message": message, "status": status}
        if description:
            body["description"] = description
        return json_response(status, {"error": body}, headers)

    def insufficient_scope(self, description: str, scope: str) -> Response:
        return json_response(
            403,
            {"error": "insufficient_scope", "error_description": description, "scope": scope},
            [
                (
                    "WWW-Authenticate",
                    f'Bearer realm="redivis", error="insufficient_scope", scope="{scope}"',
                )
            ],
        )

    def unauthorized(self, req: Request) -> Response:
        problem = req.context.get("auth_problem", "invalid")
        description = {
            "missing": "No credentials were provided; send 'Authorization: Bearer <token>'.",
            "malformed": "The Authorization header must be 'Bearer <token>'.",
        }.get(problem, "The access token is invalid, expired or revoked.")
        challenge = 'Bearer realm="redivis"'
        if problem != "missing":
            challenge += ', error="invalid_token"'
        return self.error(
            401, "Invalid credentials", description, [("WWW-Authenticate", challenge)]
        )

    def not_found(self, req: Request) -> Response:
        return self.error(404, "Route not found", f"{req.method} {req.path or '/'} does not exist")

    def method_not_allowed(self, req: Request, allowed: list[str]) -> Response:
        # The documented status codes do not include 405; an unknown method is an unknown route.
        return self.not_found(req)

    def forced_error(self, req: Request, status: int) -> Response:
        message = self._messages.get(status, reason_phrase(status))
        return self.error(status, message, "Injected by the sandbox")

    def over_limit(self, req: Request, verdict: Verdict) -> Response:
        resp = self.error(
            429,
            "Rate limit exceeded",
            f"More than {verdict.limit} requests in the current interval; retry after the "
            "time given in the Retry-After header (ms since the epoch).",
        )
        for name, value in self.hint_headers("epoch-ms", req.now, verdict.reset_at, None):
            resp.set_header(name, value)
        return resp

    def decorate(self, req: Request, resp: Response) -> None:
        seen: set[str] = set()
        for warning in req.warnings:
            if warning not in seen:
                seen.add(warning)
                resp.headers.append(("X-Redivis-Warning", warning))

    def finalize_head(self, req: Request, resp: Response) -> None:
        # HEAD answers have no body: the error goes URL-encoded into a header (doc).
        if resp.status >= 400 and resp.body:
            resp.headers.append(("X-Redivis-Error-Payload", quote(resp.body.decode(), safe="")))

    # -- helpers ---------------------------------------------------------------------------

    def _max_results(self, req: Request) -> int:
        raw = req.arg("maxResults")
        if raw is None or raw == "":
            return DEFAULT_MAX_RESULTS
        try:
            value = int(raw)
        except ValueError:
            raise ApiError(
                400, "Invalid parameter maxResults", f"'{raw}' is not an integer"
            ) from None
        if value < 1 or value > MAX_MAX_RESULTS:
            raise ApiError(
                400,
                "Invalid parameter maxResults",
                f"maxResults must be between 1 and {MAX_MAX_RESULTS}; got {value}",
            )
        return value

    def _encode_token(self, context: str, offset: int) -> str:
        check = _digest(self._token_secret, context, offset)[:12]
        raw = f"{offset}:{check}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _decode_token(self, context: str, token: str) -> int:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            offset_text, check = raw.split(":", 1)
            offset = int(offset_text)
            valid = offset >= 0 and check == _digest(self._token_secret, context, offset)[:12]
        except (ValueError, UnicodeDecodeError):
            valid = False
        if not valid:
            raise ApiError(
                400, "Invalid pageToken", "The pageToken is malformed or belongs to another list"
            )
        return offset

    def _page(
        self, req: Request, kind: str, context: str, items: list[Any], render: Callable[[Any], Any]
    ) -> Response:
        max_results = self._max_results(req)
        token = req.arg("pageToken")
        offset = self._decode_token(context, token) if token else 0
        end = offset + max_results
        next_token = self._encode_token(context, end) if end < len(items) else None
        return json_response(
            200,
            {
                "kind": kind,
                "nextPageToken": next_token,
                "results": [render(item) for item in items[offset:end]],
            },
        )

    def _resolve_dataset(self, ref: DatasetRef, req: Request, what: str = "Dataset") -> Resolved:
        text = f"{ref.owner}.{ref.name}"
        not_found = ApiError(404, f"{what} not found", f"No {what.lower()} matches '{req.path}'")
        owner = self.data.owner(ref.owner)
        if owner is None:
            raise not_found
        candidates = self.data.datasets_of(owner, include_hidden=True)
        if ref.reference_id is not None:
            matches = [d for d in candidates if d.reference_id.lower() == ref.reference_id.lower()]
            if matches and reference_name(matches[0].name).lower() != ref.name.lower():
                if req.arg("strictReferences") == "true":
                    raise not_found
                req.warnings.append(
                    f"The reference '{text}:{ref.reference_id}' names a dataset that is now "
                    f"called '{reference_name(matches[0].name)}'; it was resolved by its "
                    "reference id. Update the reference."
                )
        else:
            matches = [d for d in candidates if reference_name(d.name).lower() == ref.name.lower()]
        # 404, not 403, for what the caller may not see (doc)
        if not matches or not matches[0].may("overview"):
            raise not_found
        ds = matches[0]
        version = self._resolve_version(ds, ref.version, what)
        if ref.sample and ds.sample_configuration is None:
            raise ApiError(404, f"{what} not found", f"{ds.qualified_reference} has no sample")
        explicit = ref.version is not None and ref.version.lower() != "current"
        return Resolved(ds, version, explicit, ref.sample)

    def _resolve_version(self, ds: Dataset, tag: str | None, what: str) -> Version:
        if tag is None or tag.lower() == "current":
            return ds.current_version
        visible = [v for v in ds.versions if v.is_released or ds.may("edit")]
        if tag.lower() == "next":
            nxt = ds.next_version
            if nxt is not None and nxt in visible:
                return nxt
        else:
            for version in visible:
                if version.tag.lower() == tag.lower():
                    return version
        raise ApiError(
            404,
            f"{what} not found",
            f"Version '{tag}' does not exist in dataset {ds.qualified_reference}",
        )

    def _resolve_table(self, req: Request) -> Resolved:
        ref = parse_table_ref(req.params["tableRef"])
        resolved = self._resolve_dataset(ref.dataset, req, what="Table")
        self._require_metadata(resolved.dataset)
        tables = resolved.dataset.tables_in(resolved.version)
        if ref.reference_id is not None:
            matches = [t for t in tables if t.reference_id.lower() == ref.reference_id.lower()]
            if matches and reference_name(matches[0].name).lower() != ref.name.lower():
                if req.arg("strictReferences") == "true":
                    matches = []
                else:
                    req.warnings.append(
                        f"The table reference names '{ref.name}', but reference id "
                        f"'{ref.reference_id}' is the table '{matches[0].name}'; it was "
                        "resolved by its reference id. Update the reference."
                    )
        else:
            matches = [t for t in tables if reference_name(t.name).lower() == ref.name.lower()]
        if not matches:
            raise ApiError(404, "Table not found", f"No table matches '{req.path}'")
        resolved.table = matches[0]
        return resolved

    def _require_metadata(self, ds: Dataset) -> None:
        if not ds.may("metadata"):
            raise InsufficientScope(
                f"Your access to dataset {ds.qualified_reference} is limited to its overview; "
                "metadata access is required to read its tables and variables.",
                scope="data.metadata",
            )

    # -- handlers --------------------------------------------------------------------------

    @_api
    def openapi(self, req: Request) -> Response:
        spec = {
            "openapi": "3.0.3",
            "info": {"title": "Redivis API (sandbox subset)", "version": "v1"},
            "servers": [{"url": self.base_path}],
            "paths": {
                path: {"get": {"responses": {"200": {"description": "OK"}}}}
                for path in (
                    "/organizations/{orgReference}/datasets",
                    "/users/{userReference}/datasets",
                    "/datasets/{datasetReference}",
                    "/datasets/{datasetReference}/versions",
                    "/datasets/{datasetReference}/tables",
                    "/tables/{tableReference}",
                    "/tables/{tableReference}/variables",
                    "/tables/{tableReference}/variables/{variableName}",
                )
            },
        }
        if req.arg("format") == "json":
            return json_response(200, spec)
        # JSON is valid YAML, so the default YAML answer can carry the same text.
        resp = json_response(200, spec)
        resp.content_type = "application/yaml; charset=utf-8"
        return resp

    def _list_owner_datasets(self, req: Request, name: str, kind: str) -> Response:
        owner = self.data.owner(name)
        if owner is None or owner.kind != kind:
            label = "Organization" if kind == "organization" else "User"
            raise ApiError(404, f"{label} not found", f"No {kind} is named '{name}'")
        datasets = self.data.datasets_of(owner)
        labels: list[str] = []
        if kind == "organization":
            for value in req.query.get("labels", []):
                labels += [x.strip().lower() for x in value.split(",") if x.strip()]
        if labels:
            datasets = [d for d in datasets if {x.lower() for x in d.labels} & set(labels)]
        context = f"datasets/{kind}/{owner.name}/{','.join(sorted(set(labels)))}"
        return self._page(req, "datasetList", context, datasets, self._dataset_view)

    def _dataset_view(self, ds: Dataset) -> dict[str, Any]:
        view = self._dataset_views.get(ds.id)
        if view is None:
            view = self._dataset_views.setdefault(ds.id, self.data.dataset_json(ds))
        return view

    @_api
    def list_org_datasets(self, req: Request) -> Response:
        return self._list_owner_datasets(req, req.params["org"], "organization")

    @_api
    def list_user_datasets(self, req: Request) -> Response:
        return self._list_owner_datasets(req, req.params["user"], "user")

    @_api
    def get_dataset(self, req: Request) -> Response:
        resolved = self._resolve_dataset(parse_dataset_ref(req.params["datasetRef"]), req)
        body = self.data.dataset_json(
            resolved.dataset,
            detail=True,
            version=resolved.version if resolved.explicit_version else None,
            sample=resolved.sample,
        )
        return json_response(200, body)

    @_api
    def list_versions(self, req: Request) -> Response:
        ds = self._resolve_dataset(parse_dataset_ref(req.params["datasetRef"]), req).dataset
        versions = [v for v in reversed(ds.versions) if v.is_released or ds.may("edit")]
        return self._page(
            req,
            "versionList",
            f"versions/{ds.id}",
            versions,
            lambda v: self.data.version_json(ds, v),
        )

    @_api
    def list_tables(self, req: Request) -> Response:
        resolved = self._resolve_dataset(parse_dataset_ref(req.params["datasetRef"]), req)
        ds = resolved.dataset
        self._require_metadata(ds)
        tables = ds.tables_in(resolved.version)
        context = f"tables/{ds.id}/{resolved.version.tag}/{resolved.sample}"
        return self._page(
            req,
            "tableList",
            context,
            tables,
            lambda t: self.data.table_json(t, resolved.version, sample=resolved.sample),
        )

    @_api
    def get_table(self, req: Request) -> Response:
        resolved = self._resolve_table(req)
        assert resolved.table is not None
        body = self.data.table_json(
            resolved.table, resolved.version, sample=resolved.sample, detail=True
        )
        return json_response(200, body)

    @_api
    def list_variables(self, req: Request) -> Response:
        resolved = self._resolve_table(req)
        table = resolved.table
        assert table is not None
        table_ref = table.qualified_reference_in(resolved.version, resolved.sample)
        context = f"variables/{table.id_in(resolved.version, resolved.sample)}"
        return self._page(
            req,
            "variableList",
            context,
            table.variables,
            lambda v: self.data.variable_json(table, v, table_ref),
        )

    @_api
    def get_variable(self, req: Request) -> Response:
        resolved = self._resolve_table(req)
        table = resolved.table
        assert table is not None
        wanted = req.params["name"].lower()
        for variable in table.variables:
            if variable.name.lower() == wanted:
                table_ref = table.qualified_reference_in(resolved.version, resolved.sample)
                body = self.data.variable_json(table, variable, table_ref, detail=True)
                return json_response(200, body)
        raise ApiError(
            404, "Variable not found", f"No variable '{req.params['name']}' in this table"
        )

    # -- rows: read sessions and Arrow read streams ------------------------------------

    @_api
    def create_read_session(self, req: Request) -> Response:
        resolved = self._resolve_table(req)
        table = resolved.table
        assert table is not None
        if not resolved.dataset.may("data"):
            raise InsufficientScope(
                f"Reading rows of {table.qualified_reference} needs data access.",
                scope="data.data",
            )
        try:
            body = req.json() or {}
        except ValueError:
            raise ApiError(400, "Invalid request body", "The body must be JSON") from None
        fmt = body.get("format", "arrow")
        if fmt != "arrow":
            raise ApiError(400, "Unsupported format", f"This sandbox serves 'arrow', not {fmt!r}")
        selected = body.get("selectedVariables")
        requested = body.get("requestedStreamCount", 1)
        max_results = body.get("maxResults")
        if not isinstance(requested, int) or requested < 1:
            raise ApiError(400, "Invalid parameter requestedStreamCount", "Must be >= 1")
        session, unknown = self.read_sessions.create(
            table,
            resolved.version,
            TOKEN_USER,
            selected=selected,
            requested=requested,
            max_results=max_results,
            now=req.now,
        )
        if unknown:
            raise ApiError(400, "Unknown variables", f"No such variables: {', '.join(unknown)}")
        return json_response(
            200,
            {
                "kind": "readSession",
                "id": session.id,
                "numRows": session.num_rows,
                "streams": [{"id": s.id, "estimatedRows": s.estimated} for s in session.streams],
            },
        )

    @_api
    def list_rows(self, req: Request) -> Response:
        """All rows in one Arrow IPC body: the official client's read of small tables
        (``numBytes`` < 1e8). It cannot be resumed and has no end-of-stream batch."""
        resolved = self._resolve_table(req)
        table = resolved.table
        assert table is not None
        if not resolved.dataset.may("data"):
            raise InsufficientScope(
                f"Reading rows of {table.qualified_reference} needs data access.",
                scope="data.data",
            )
        fmt = req.arg("format") or "arrow"
        if fmt != "arrow":
            raise ApiError(400, "Unsupported format", f"This sandbox serves 'arrow', not {fmt!r}")
        raw_selected = req.arg("selectedVariables")
        selected = [n for n in raw_selected.split(",") if n] if raw_selected else None
        raw_max = req.arg("maxResults")
        if raw_max is not None and not raw_max.isdigit():
            raise ApiError(
                400, "Invalid parameter maxResults", f"'{raw_max}' is not a whole number"
            )
        session, unknown = self.read_sessions.create(
            table,
            resolved.version,
            TOKEN_USER,
            selected=selected,
            requested=1,
            max_results=int(raw_max) if raw_max is not None else None,
            now=req.now,
        )
        if unknown:
            raise ApiError(400, "Unknown variables", f"No such variables: {', '.join(unknown)}")
        resp = Response(status=200, content_type="application/vnd.apache.arrow.stream")
        # the same Arrow types as the table's read streams (pitfall 4 included)
        mistyped = {"float", "time"} if _digest(session.table_key)[0] in "0123" else set()
        resp.stream = self.read_sessions.whole_body(session.streams[0], mistyped)
        return resp

    @_api
    def read_stream(self, req: Request) -> Response:
        stream = self.read_sessions.lookup(req.params["streamId"], TOKEN_USER, req.now)
        if stream is None:
            raise ApiError(
                404, "Read stream not found", "The read session does not exist or has expired"
            )
        raw = req.arg("offset") or "0"
        if not raw.isdigit():
            raise ApiError(400, "Invalid parameter offset", f"'{raw}' is not a whole number")
        offset = int(raw)
        if offset > stream.rows:
            raise ApiError(400, "Invalid parameter offset", "offset is beyond the stream's end")
        table_key = self.read_sessions.sessions[stream.session_id].table_key
        # Some dataset tables arrive with Arrow types that differ from their variables'
        # (notes, pitfall 4): here floats and times come as strings.
        mistyped = {"float", "time"} if _digest(table_key)[0] in "0123" else set()
        resp = Response(status=200, content_type="application/vnd.apache.arrow.stream")
        sentinel = (req.arg("eosSentinel") or "").lower() == "true"
        resp.stream = self.read_sessions.body(stream, offset, mistyped, sentinel=sentinel)
        return resp

    def end_stream_early(self, req: Request, resp: Response) -> bool:
        if resp.status != 200 or not isinstance(resp.stream, ArrowBody):
            return False
        resp.stream.end_early = True
        return True
