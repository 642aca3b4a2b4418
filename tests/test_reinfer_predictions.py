"""Re:infer predictions against the sandbox: one record per comment the model scores,
compared with the sandbox's own model; incremental reruns; resume after a kill; batches."""

from __future__ import annotations

import copy
import json
import logging
from collections import Counter
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
import requests

from dataplatforms_sandbox import CREDENTIALS, Sandbox
from dataplatforms_sandbox.reinfer import MAX_PREDICT_UIDS
from dataplatforms_sandbox.shapes import with_unknown_fields
from tap_dataplatforms.reinfer.predictions import PREDICT_BATCH_UIDS
from tests.helpers import make_tap, run_sync
from tests.test_reinfer_sandbox import ROOMY, only, reinfer_config, run_ordered

PREDICTIONS = "reinfer_predictions"
TOKEN = CREDENTIALS["reinfer"]["token"]


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    sb = Sandbox(seed=29, scale=1, limits=ROOMY).start()
    yield sb
    sb.stop()


def keys(records: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    return [(r["dataset_id"], r["uid"], r["model_version"]) for r in records]


def predict_calls(sb: Sandbox) -> list[dict[str, Any]]:
    return [e for e in sb.request_log("reinfer") if e["path"].endswith("/predict-comments")]


@pytest.mark.untimed
def test_every_scored_comment_has_one_prediction_record_as_the_model_says(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    model = sandbox.reinfer
    billing = model.dataset_named("acme-support", "billing")
    pipeline = model.dataset_named("acme-sales", "pipeline")
    assert billing is not None
    assert pipeline is not None
    # What the test is about: versions listed out of order, a dataset without a model.
    assert billing.model_versions[-1] != billing.latest_model == 7
    assert pipeline.model_versions == []
    with caplog.at_level(logging.WARNING):
        out = run_sync(only(make_tap(reinfer_config(sandbox)), PREDICTIONS))
    records = out.records[PREDICTIONS]
    got = keys(records)
    assert len(got) == len(set(got)), "duplicate predictions"
    assert set(got) == model.predicted_keys()
    assert len(got) > 3000
    assert not any("not found in catalog schema" in r.getMessage() for r in caplog.records)

    # Each record is the sandbox model's answer for that comment, labels in display form.
    comments = {c.uid: c for s in model.sources.values() for c in s.comments}
    for record in records:
        dataset = model.datasets[record["dataset_id"]]
        comment = comments[record["uid"]]
        want = model.prediction(dataset, record["model_version"], comment)
        assert record["comment_id"] == comment.id
        assert record["source_id"] == record["uid"].split(".", 1)[0]
        assert [(lab["name_parts"], lab["probability"]) for lab in record.get("labels", [])] == [
            (lab["name"], lab["probability"]) for lab in want.get("labels", [])
        ]
        # As the API serves them: with the fields nobody declared (sandbox default).
        assert record.get("entities") == with_unknown_fields(want.get("entities"))
        for label in record.get("labels", []):
            assert label["name"] == " > ".join(label["name_parts"])
    labels = [lab for r in records for lab in r.get("labels", [])]
    sentiments = [lab["sentiment"] for lab in labels if "sentiment" in lab]
    assert sentiments
    assert all(isinstance(s, float) for s in sentiments)  # a number, never a word
    assert len(sentiments) < len(labels)  # absent on some labels
    assert any("labels" not in r for r in records)  # comments with no label predicted

    # Every record matches its SCHEMA (Draft 7, date-time checked).
    schema = out.schemas[PREDICTIONS]
    checker = jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())
    for record in records:
        checker.validate(record)

    # Sorted per (dataset, source): the bookmark may follow the records.
    for partition in {(r["dataset_id"], r["source_id"]) for r in records}:
        stamps = [r["timestamp"] for r in records if (r["dataset_id"], r["source_id"]) == partition]
        assert stamps == sorted(stamps)

    # Requests: one labellers listing per dataset; full batches of 512 uids, within the
    # sandbox's limit, and the pipeline dataset's comments never read.
    log = sandbox.request_log("reinfer")
    assert sum(e["path"].endswith("/labellers") for e in log) == len(model.datasets)
    assert all(e["status"] == 200 for e in log)
    assert not any(f"/{pipeline.name}/labellers/" in e["path"] for e in log)
    assert PREDICT_BATCH_UIDS <= MAX_PREDICT_UIDS
    per_partition = Counter((r["dataset_id"], r["source_id"]) for r in records)
    assert len(predict_calls(sandbox)) == sum(
        -(-n // PREDICT_BATCH_UIDS) for n in per_partition.values()
    )


@pytest.mark.untimed
def test_incremental_rerun_emits_only_new_predictions(sandbox: Sandbox) -> None:
    model = sandbox.reinfer
    config = reinfer_config(sandbox)
    first = run_sync(only(make_tap(config), PREDICTIONS))
    assert set(keys(first.records[PREDICTIONS])) == model.predicted_keys()
    state = first.states[-1]
    bookmarks = {
        (p["context"]["dataset_id"], p["context"]["source_id"]): p["replication_key_value"]
        for p in state["bookmarks"][PREDICTIONS]["partitions"]
    }

    before = model.predicted_keys()
    added = model.advance(12)
    sandbox.clear_log()
    second = run_sync(only(make_tap(config, state=copy.deepcopy(state)), PREDICTIONS))
    got = keys(second.records[PREDICTIONS])
    new = model.predicted_keys() - before
    assert len(new) == 12 * sum(
        len(d.source_ids) for d in model.datasets.values() if d.latest_model
    )
    assert {uid for _, uid, _ in new} <= {f"{s}.{c}" for s, c in added}
    assert new <= set(got)
    # Besides the new ones, only comments at a partition's bookmark instant come back.
    repeated = [r for r in second.records[PREDICTIONS] if keys([r])[0] not in new]
    assert all(r["timestamp"] == bookmarks[(r["dataset_id"], r["source_id"])] for r in repeated)
    assert len(repeated) <= len(bookmarks) * 20
    # And the requests: each partition's comments from its bookmark, one batch each.
    assert len(predict_calls(sandbox)) == len(bookmarks)


@pytest.mark.untimed
def test_a_newer_model_version_scores_every_comment_again(sandbox: Sandbox) -> None:
    model = sandbox.reinfer
    config = reinfer_config(sandbox)
    first = run_sync(only(make_tap(config), PREDICTIONS))
    triage = model.dataset_named("acme-support", "triage")
    assert triage is not None
    triage.model_versions.append(3)
    second = run_sync(only(make_tap(config, state=first.states[-1]), PREDICTIONS))
    rescored = {k for k in keys(second.records[PREDICTIONS]) if k[0] == triage.id}
    assert rescored == {k for k in model.predicted_keys() if k[0] == triage.id}
    assert {v for _, _, v in rescored} == {3}


@pytest.mark.untimed
def test_killed_sync_resumes_without_losing_predictions(sandbox: Sandbox) -> None:
    model = sandbox.reinfer
    config = reinfer_config(sandbox)
    messages = run_ordered(only(make_tap(config), PREDICTIONS))
    records = [i for i, m in enumerate(messages) if m["type"] == "RECORD"]
    # Killed in the middle of the first dataset's largest source, between two STATEs.
    cut = records[1500]
    delivered = [keys([m["record"]])[0] for m in messages[:cut] if m["type"] == "RECORD"]
    state = next(m["value"] for m in reversed(messages[:cut]) if m["type"] == "STATE")
    assert state["bookmarks"][PREDICTIONS]["partitions"]

    resumed = run_sync(only(make_tap(config, state=state), PREDICTIONS))
    again = keys(resumed.records[PREDICTIONS])
    assert set(delivered) | set(again) == model.predicted_keys()
    assert len(again) == len(set(again))
    re_read = Counter((d, uid.split(".", 1)[0]) for d, uid, _ in set(delivered) & set(again))
    # At most one batch per partition, plus comments tied with the bookmark's instant.
    assert re_read
    assert all(n <= PREDICT_BATCH_UIDS + 20 for n in re_read.values()), re_read


@pytest.mark.untimed
def test_a_batch_refused_as_too_large_is_halved(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox.reinfer.max_predict_uids = 200
    with caplog.at_level(logging.WARNING):
        out = run_sync(only(make_tap(reinfer_config(sandbox)), PREDICTIONS))
    assert set(keys(out.records[PREDICTIONS])) == sandbox.reinfer.predicted_keys()
    statuses = Counter(e["status"] for e in predict_calls(sandbox))
    # 512 and then 256 refused once each; 128 per request for the rest of the sync.
    assert statuses[400] == 2
    assert sum("predict-comments refused" in r.getMessage() for r in caplog.records) == 2


@pytest.mark.untimed
def test_private_labellers_route_missing_skips_predictions_once(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox.reinfer.private_routes = False
    with caplog.at_level(logging.WARNING):
        out = run_sync(only(make_tap(reinfer_config(sandbox)), PREDICTIONS))
    assert out.records[PREDICTIONS] == []
    warned = [r for r in caplog.records if f"{PREDICTIONS} skipped" in r.getMessage()]
    assert len(warned) == 1
    assert sum(e["path"].endswith("/labellers") for e in sandbox.request_log("reinfer")) == 1


@pytest.mark.untimed
def test_sandbox_predictions_are_the_apis(sandbox: Sandbox) -> None:
    base = sandbox.base_url("reinfer")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    billing = sandbox.reinfer.dataset_named("acme-support", "billing")
    assert billing is not None
    listed = requests.post(
        f"{base}/api/_private/datasets/acme-support/billing/labellers",
        json={},
        headers=auth,
        timeout=10,
    ).json()
    assert [m["version"] for m in listed["labellers"]] == billing.model_versions
    url = f"{base}/api/v1/datasets/acme-support/billing/labellers/7/predict-comments"
    inbox = sandbox.reinfer.source_named("acme-support", "inbox")
    assert inbox is not None
    uids = [c.uid for c in inbox.comments[:5]]
    asked = [uids[0], "nope.msg-1", *uids[1:]]
    answer = requests.post(url, json={"uids": asked, "threshold": "auto"}, headers=auth, timeout=10)
    assert answer.status_code == 200
    answered = [p["uid"] for p in answer.json()["predictions"]]
    assert sorted(answered) == sorted(uids)  # the unknown one left out
    assert answered != uids  # in no particular order: pair by uid, not by position
    too_many = requests.post(url, json={"uids": uids * 300}, headers=auth, timeout=10)
    assert too_many.status_code == 400
    assert "at most 1024" in too_many.json()["message"]
    unknown = requests.post(
        url.replace("/7/", "/99/"), json={"uids": uids}, headers=auth, timeout=10
    )
    assert unknown.status_code == 404
    assert json.loads(unknown.text)["status"] == "error"


def test_predictions_stay_within_the_budget_at_the_server(sandbox: Sandbox) -> None:
    """At the contract's default budget (10 a second) against a server that allows 10 in
    any rolling second: every prediction, no 429, the peak at the server within budget."""
    sandbox.set_limit("reinfer", 10, 1.0)
    config = reinfer_config(sandbox, max_requests_per_second=10)
    out = run_sync(only(make_tap(config), PREDICTIONS))
    assert set(keys(out.records[PREDICTIONS])) == sandbox.reinfer.predicted_keys()
    seen = sandbox.peak("reinfer")
    assert seen["rejected"] == 0, seen
    assert seen["peak"] <= 10 + 1, seen  # ceil(budget) + 1, as the budget tests allow
    # Labellers per dataset, the source list, comment pages and predict batches.
    assert seen["requests"] >= 25, seen
