"""The tables of morphnas (SQLAlchemy Core), private to ``morphnas.storage``.

Nothing outside this folder sees a row: :mod:`morphnas.storage.repository` turns rows into the
records of :mod:`morphnas.core.records`. The schema changes only through the Alembic migrations
in ``migrations/versions``; a test checks that this metadata and the migrations agree.

Times are float unix seconds (``DOUBLE``). JSON values (a search's config, a trial's morph
operations) are stored as text written by :func:`json.dumps`, so both databases round-trip them
byte for byte. Blobs (weights) live in their own table and are never read with a trial row.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

ID = String(32)  # uuid4 hex

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)

searches = Table(
    "searches",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("config", Text, nullable=False),  # SearchConfig as JSON
    Column("created_at", Double, nullable=False),
    Column("size_cap_params", BigInteger, nullable=False),
    # Trials numbered so far; the next number. Only changed under the search row's lock.
    Column("trial_count", Integer, nullable=False),
    Column("stopped", Boolean, nullable=False),
    Index(None, "created_at", "id"),
)

trials = Table(
    "trials",
    metadata,
    Column("id", ID, primary_key=True),
    Column("search_id", ID, ForeignKey("searches.id", ondelete="CASCADE"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("architecture", Text, nullable=False),
    Column("arch_hash", String(128), nullable=False),
    # Not a foreign key: a trial's parent is in the same search and goes away with it.
    Column("parent_id", ID, nullable=True),
    Column("operations", Text, nullable=False),  # JSON list of morph op dicts
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("score", Double, nullable=True),
    Column("reason", Text, nullable=False),
    Column("worker_id", String(256), nullable=False),
    Column("lease_expires_at", Double, nullable=True),
    Column("lease_seconds", Double, nullable=False),
    Column("weights_sha256", String(64), nullable=False),  # of the trained weights, "" if none
    Column("reissue_of", ID, nullable=True),  # the STALE trial this one repeats
    Column("reissued_as", ID, nullable=True),  # set on a STALE trial once handed out again
    Column("num_params", BigInteger, nullable=True),  # of the architecture; NULL: not recorded
    # The report's named metrics as a JSON object (NULL: none), and the machine they were
    # measured on ("" if not said).
    Column("metrics", Text, nullable=True),
    Column("measured_on", String(200), nullable=False, server_default=""),
    UniqueConstraint("search_id", "number"),
    Index(None, "search_id", "state", "number"),
    # Covers the per-ask scan of (id, state) by number without touching the wide rows.
    Index(None, "search_id", "number", "state", "id"),
    Index(None, "state", "lease_expires_at"),
)

trial_weights = Table(
    "trial_weights",
    metadata,
    Column(
        "trial_id",
        ID,
        ForeignKey("trials.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("kind", String(16), primary_key=True),  # "initial" | "trained" | "final"
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("data", LargeBinary, nullable=False),
)

# Weights uploaded ahead of a report (streamed in chunks), kept until the report names them.
staged_weights = Table(
    "staged_weights",
    metadata,
    Column(
        "trial_id",
        ID,
        ForeignKey("trials.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("sha256", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("created_at", Double, nullable=False),
)

measurements = Table(
    "measurements",
    metadata,
    Column(
        "trial_id",
        ID,
        ForeignKey("trials.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("name", String(100), primary_key=True),
    Column("step", Integer, primary_key=True),
    Column("value", Double, nullable=False),
    Column("created_at", Double, nullable=False),
)

# ---------------------------------------------------------------------- server-side training

# Uploaded datasets: an npz of x and y, checked on upload; the blob is read only by workers.
datasets = Table(
    "datasets",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("input_shape", Text, nullable=False),  # JSON list
    Column("num_classes", Integer, nullable=False),
    Column("num_examples", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("created_at", Double, nullable=False),
)

dataset_blobs = Table(
    "dataset_blobs",
    metadata,
    Column("dataset_id", ID, ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True),
    Column("data", LargeBinary, nullable=False),
)

# A server-side run: train `trials` suggestions of a search; workers claim slots from it.
training_runs = Table(
    "training_runs",
    metadata,
    Column("id", ID, primary_key=True),
    Column("search_id", ID, ForeignKey("searches.id", ondelete="CASCADE"), nullable=False),
    Column("dataset", String(200), nullable=False),
    Column("trials", Integer, nullable=False),
    Column("claimed", Integer, nullable=False),
    Column("budget", Text, nullable=False),  # TrainingBudget as JSON
    Column("state", String(16), nullable=False),
    Column("first_number", Integer, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("finished_at", Double, nullable=True),
    Column("best_trial_id", ID, nullable=True),
    Column("test_accuracy", Double, nullable=True),
    Column("budget_seconds", Double, nullable=False, server_default="0"),  # 0: no budget
    # Training seconds of the run's trials so far, added to by workers after every epoch.
    Column("spent_seconds", Double, nullable=False, server_default="0"),
    # What the run does after its search: "none" | "continue" | "retrain" (a final fit).
    Column("final_fit", String(16), nullable=False, server_default="none"),
    Column("final_test_accuracy", Double, nullable=True),  # of the final fit's model
    # Of budget_seconds, held back for the final fit (trials stop at spent + reserved).
    Column("reserved_seconds", Double, nullable=False, server_default="0"),
    Index(None, "state", "created_at"),
    Index(None, "search_id", "created_at"),
)

# What happened in a search, in order: the feed of WatchSearch.
events = Table(
    "events",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("search_id", ID, ForeignKey("searches.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("payload", Text, nullable=False),  # JSON object
    Column("created_at", Double, nullable=False),
    Index(None, "search_id", "id"),
)
