"""Re:infer (Communications Mining) schemas, from the official CLI's API client.

Reference: github.com/reinfer/cli, ``api/src/resources/`` (``project.rs``, ``dataset.rs``,
``source.rs``, ``comment.rs``, ``stream.rs``), and the project's notes
(``shared/apis/reinfer.md``, fields tagged client). Fields the client does not type, or
that the notes mark as assumed, take every plausible form. Every object stays open.
"""

from __future__ import annotations

from singer_sdk import typing as th

from tap_dataplatforms.core.schemas import (
    ANY_JSON,
    OBJECT,
    OBJECTS,
    SCALAR,
    STRINGS,
    record_schema,
)

TIMESTAMP = th.DateTimeType

# comment.rs: Message (body, subject, signature, from, to/cc/bcc, sent_at, language).
MESSAGE = th.ObjectType(
    th.Property("body", OBJECT),
    th.Property("subject", OBJECT),
    th.Property("signature", OBJECT),
    th.Property("from", th.StringType),
    th.Property("to", STRINGS),
    th.Property("cc", STRINGS),
    th.Property("bcc", STRINGS),
    th.Property("sent_at", TIMESTAMP),
    th.Property("language", th.StringType),
    additional_properties=True,
)
# comment.rs: Comment.
COMMENT_FIELDS = (
    th.Property("id", th.StringType, required=True),
    th.Property("uid", th.StringType),
    th.Property("thread_id", th.StringType),
    th.Property("timestamp", TIMESTAMP),
    th.Property("messages", th.ArrayType(MESSAGE)),
    th.Property(
        "user_properties",
        OBJECT,
        description="Keys carry a type prefix, `string:<Name>` or `number:<Name>`.",
    ),
    th.Property("attachments", OBJECTS),
    th.Property("created_at", TIMESTAMP),
    th.Property("has_annotations", th.BooleanType),
)
# comment.rs: Label (assigned, dismissed: sentiment "positive" | "negative") and
# PredictedLabel (probability, sentiment a number or absent): one schema for both.
LABEL = th.ObjectType(
    th.Property("name", th.StringType, description='Parts joined with " > ".'),
    th.Property("name_parts", STRINGS, description="The label's hierarchy, top first."),
    th.Property(
        "sentiment",
        SCALAR,
        description='"positive"/"negative" on reviewed labels, a number on predicted ones.',
    ),
    th.Property("probability", th.NumberType),
    th.Property("metadata", OBJECT),
    additional_properties=True,
)
LABELLING_GROUP = th.ObjectType(
    th.Property("group", th.StringType),
    th.Property("assigned", th.ArrayType(LABEL)),
    th.Property("dismissed", th.ArrayType(LABEL)),
    th.Property("predicted", th.ArrayType(LABEL)),
    additional_properties=True,
)

# project.rs: Project (``id`` may be absent).
PROJECTS = record_schema(
    th.Property("name", th.StringType, required=True),
    th.Property("id", th.StringType),
    th.Property("title", th.StringType),
    th.Property("description", th.StringType),
    th.Property("created_at", TIMESTAMP),
    th.Property("updated_at", TIMESTAMP),
)

# dataset.rs: Dataset. ``_dataset_flags`` is a list of flag names (e.g. ["gpt4"]);
# ``_model_config`` is internal and untyped.
DATASETS = record_schema(
    th.Property("id", th.StringType, required=True),
    th.Property("name", th.StringType),
    th.Property("owner", th.StringType, description="The project name."),
    th.Property("title", th.StringType),
    th.Property("description", th.StringType),
    th.Property("source_ids", STRINGS),
    th.Property("has_sentiment", th.BooleanType),
    th.Property("model_family", th.StringType),
    th.Property("label_defs", OBJECTS),
    th.Property("label_groups", OBJECTS),
    th.Property("entity_defs", OBJECTS),
    th.Property("general_fields", OBJECTS),
    th.Property("_dataset_flags", STRINGS),
    th.Property("_model_config", ANY_JSON),
    th.Property("created", TIMESTAMP),
    th.Property("last_modified", TIMESTAMP),
)

# source.rs: Source (``bucket_id`` null when no bucket feeds it; ``_kind`` an open set).
SOURCES = record_schema(
    th.Property("id", th.StringType, required=True),
    th.Property("owner", th.StringType, description="The project name."),
    th.Property("name", th.StringType),
    th.Property("title", th.StringType),
    th.Property("description", th.StringType),
    th.Property("language", th.StringType),
    th.Property("should_translate", th.BooleanType),
    th.Property("sensitive_properties", STRINGS),
    th.Property("bucket_id", th.StringType),
    th.Property("_kind", th.StringType),
    th.Property("email_transform_tag", th.StringType),
    th.Property("created_at", TIMESTAMP),
    th.Property("updated_at", TIMESTAMP),
)

COMMENTS = record_schema(
    th.Property("source_id", th.StringType, required=True),
    th.Property("project", th.StringType, description="The source's project (`owner`)."),
    th.Property("source_name", th.StringType, description="The source's `name`."),
    *COMMENT_FIELDS,
)

# stream.rs: Stream (``model`` holds ``version`` and ``label_thresholds``).
STREAMS = record_schema(
    th.Property("id", th.StringType, required=True),
    th.Property("dataset_id", th.StringType),
    th.Property("name", th.StringType),
    th.Property("title", th.StringType),
    th.Property("description", th.StringType),
    th.Property("comment_filter", OBJECT),
    th.Property("label_threshold_filter", OBJECT),
    th.Property("model", OBJECT),
    th.Property("created_at", TIMESTAMP),
    th.Property("updated_at", TIMESTAMP),
)

# comment.rs: AnnotatedComment (comment, labelling groups, entities, pass-through parts).
LABELLINGS = record_schema(
    th.Property("dataset_id", th.StringType, required=True),
    th.Property("uid", th.StringType, required=True, description="From `comment.uid`."),
    th.Property("source_id", th.StringType),
    th.Property("comment", th.ObjectType(*COMMENT_FIELDS, additional_properties=True)),
    th.Property("labelling", th.ArrayType(LABELLING_GROUP)),
    th.Property("entities", ANY_JSON),
    th.Property("thread_properties", th.AnyType),
    th.Property("moon_forms", th.AnyType),
    th.Property("label_properties", th.AnyType),
)

# comment.rs: PredictedLabel (sentiment a number, about -1 ... 1, or absent), as the
# predict-comments answer gives it.
PREDICTED_LABEL = th.ObjectType(
    th.Property("name", th.StringType, description='Parts joined with " > ".'),
    th.Property("name_parts", STRINGS, description="The label's hierarchy, top first."),
    th.Property("probability", th.NumberType),
    th.Property("sentiment", th.NumberType),
    th.Property("auto_thresholds", STRINGS),
    additional_properties=True,
)
# A prediction of the model for one comment, keyed by dataset, comment uid and model version.
PREDICTIONS = record_schema(
    th.Property("dataset_id", th.StringType, required=True),
    th.Property("uid", th.StringType, required=True, description="`source_id.comment_id`"),
    th.Property("model_version", th.IntegerType, required=True),
    th.Property("project", th.StringType, description="The dataset's project (`owner`)."),
    th.Property("dataset_name", th.StringType, description="The dataset's `name`."),
    th.Property("source_id", th.StringType),
    th.Property("comment_id", th.StringType, description="The comment's `id`."),
    th.Property("timestamp", TIMESTAMP, description="The comment's `timestamp`."),
    th.Property("labels", th.ArrayType(PREDICTED_LABEL)),
    th.Property("entities", ANY_JSON),
)
