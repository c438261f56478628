"""Versioned prompts that improve: every version is kept with its lineage, status and reward
statistics; exactly one version per prompt name is active; promotions can be rolled back.

Statuses: ``candidate`` (proposed, not serving), ``active`` (serving), ``rejected`` (lost its
validation, or was rolled back), ``retired`` (was active, replaced by a promotion).

Version labels: seeds keep the labels the code gives them ("v1", see `nodes.prompts`); learned versions
are ``<seed>.<k>`` ("v1.1", "v1.2", ...) so they never collide with a seed added to the code later.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from foundation.database import Connection, Row
from foundation.settings import Settings
from prompt_registry.db import LearningDB, open_db

Status = Literal["candidate", "active", "rejected", "retired"]


@dataclass(frozen=True)
class Prompt:
    """One immutable prompt version."""

    name: str
    version: str
    text: str


def system_prompt(agent: str) -> str:
    """The name of an agent's system prompt ("consumer" -> "consumer.system")."""
    return f"{agent}.system"


def adapter_prompt(agent: str) -> str:
    """The name of the LoRA adapter an agent's answers are decoded with ("consumer" ->
    "consumer.adapter"): a version's text names the adapter, empty for the base model."""
    return f"{agent}.adapter"


class RegistryError(ValueError):
    """An impossible registry operation (unknown version, nothing to roll back to, ...)."""


@dataclass(frozen=True)
class PromptVersion:
    """One stored version with its lineage, status and reward statistics."""

    name: str
    version: str
    text: str
    parent: str | None
    created: float
    status: Status
    source: str
    note: str
    n: int
    mean: float
    m2: float

    @property
    def prompt(self) -> Prompt:
        return Prompt(self.name, self.version, self.text)

    @property
    def std(self) -> float:
        """Sample standard deviation of the recorded rewards (0 with fewer than two)."""
        return math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else 0.0


@dataclass(frozen=True)
class PromptEvent:
    """A change of status: seeded, added, promoted, rejected, retired, rolled_back, reactivated."""

    name: str
    version: str
    event: str
    at: float
    detail: str


class PromptRegistry:
    """Prompt versions in the learning store, seeded with the code's seed prompts."""

    def __init__(self, db: LearningDB | Path | str, seeds: Mapping[str, Prompt]) -> None:
        self.db = open_db(db)
        self._seed(seeds)

    @classmethod
    def in_data_dir(cls, data_dir: Path, seeds: Mapping[str, Prompt]) -> PromptRegistry:
        """The registry in the learning file of ``data_dir`` (one host)."""
        return cls(LearningDB.in_data_dir(data_dir), seeds)

    @classmethod
    def for_settings(
        cls, settings: Settings, seeds: Mapping[str, Prompt], data_dir: Path | None = None
    ) -> PromptRegistry:
        """The registry of the mesh the settings describe (in its database, or in the learning
        file of `data_dir`, default theirs)."""
        return cls(LearningDB.for_settings(settings, data_dir), seeds)

    # -- reading -----------------------------------------------------------------------------

    def names(self) -> list[str]:
        return [r["name"] for r in self.db.query("SELECT DISTINCT name FROM prompt_versions")]

    def current(self, name: str) -> Prompt:
        """The active version of prompt `name`."""
        rows = self.db.query(
            "SELECT * FROM prompt_versions WHERE name = ? AND status = 'active'", (name,)
        )
        if not rows:
            raise RegistryError(f"no active version of prompt {name!r}")
        return _version(rows[0]).prompt

    def current_all(self) -> dict[str, Prompt]:
        """The active version of every prompt, by name (what `Services.prompts` takes)."""
        rows = self.db.query("SELECT * FROM prompt_versions WHERE status = 'active'")
        return {r["name"]: _version(r).prompt for r in rows}

    def get(self, name: str, version: str) -> PromptVersion:
        rows = self.db.query(
            "SELECT * FROM prompt_versions WHERE name = ? AND version = ?", (name, version)
        )
        if not rows:
            raise RegistryError(f"prompt {name!r} has no version {version!r}")
        return _version(rows[0])

    def find_text(self, name: str, text: str) -> PromptVersion | None:
        """The version of `name` whose text is exactly `text`, if any."""
        rows = self.db.query(
            "SELECT * FROM prompt_versions WHERE name = ? AND text = ? ORDER BY created LIMIT 1",
            (name, text),
        )
        return _version(rows[0]) if rows else None

    def history(self, name: str) -> list[PromptVersion]:
        """Every version of `name`, oldest first."""
        rows = self.db.query(
            "SELECT * FROM prompt_versions WHERE name = ? ORDER BY created, rowid", (name,)
        )
        return [_version(r) for r in rows]

    def versions(self, name: str, *statuses: Status) -> list[PromptVersion]:
        """Versions of `name` with one of `statuses` (all when none given), oldest first."""
        wanted = set(statuses)
        return [v for v in self.history(name) if not wanted or v.status in wanted]

    def events(self, name: str) -> list[PromptEvent]:
        """The status changes of `name`, oldest first."""
        rows = self.db.query(
            "SELECT name, version, event, at, detail FROM prompt_events WHERE name = ? ORDER BY id",
            (name,),
        )
        return [PromptEvent(**dict(r)) for r in rows]

    # -- changing ----------------------------------------------------------------------------

    def add_candidate(
        self,
        name: str,
        text: str,
        parent: str | None = None,
        *,
        source: str = "manual",
        note: str = "",
    ) -> Prompt:
        """Store `text` as a new candidate version of `name` (derived from `parent`, default the
        active version). A text identical to an existing version returns that version unchanged."""
        if not text.strip():
            raise RegistryError("a prompt version needs a non-empty text")
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT * FROM prompt_versions WHERE name = ? AND text = ?", (name, text)
            ).fetchone()
            if row is not None:
                return _version(row).prompt
            active = conn.execute(
                "SELECT version FROM prompt_versions WHERE name = ? AND status = 'active'", (name,)
            ).fetchone()
            if active is None:
                raise RegistryError(f"unknown prompt {name!r}")
            parent = parent or active["version"]
            if (
                conn.execute(
                    "SELECT 1 FROM prompt_versions WHERE name = ? AND version = ?", (name, parent)
                ).fetchone()
                is None
            ):
                raise RegistryError(f"prompt {name!r} has no version {parent!r}")
            version = self._next_label(conn, name, parent)
            now = time.time()
            conn.execute(
                "INSERT INTO prompt_versions (name, version, text, parent, created, status, source,"
                " note) VALUES (?, ?, ?, ?, ?, 'candidate', ?, ?)",
                (name, version, text, parent, now, source, note),
            )
            _event(conn, name, version, "added", f"parent {parent}; {source}")
        return Prompt(name, version, text)

    def promote(self, name: str, version: str, detail: str = "") -> Prompt:
        """Make `version` the active version of `name`; the previous active one is retired."""
        with self.db.transaction() as conn:
            row = _row(conn, name, version)
            if row["status"] == "active":
                return _version(row).prompt
            old = conn.execute(
                "SELECT version FROM prompt_versions WHERE name = ? AND status = 'active'", (name,)
            ).fetchone()
            if old is not None:
                conn.execute(
                    "UPDATE prompt_versions SET status = 'retired' WHERE name = ? AND version = ?",
                    (name, old["version"]),
                )
                _event(conn, name, old["version"], "retired", f"replaced by {version}")
            conn.execute(
                "UPDATE prompt_versions SET status = 'active' WHERE name = ? AND version = ?",
                (name, version),
            )
            _event(conn, name, version, "promoted", detail)
            return _version(_row(conn, name, version)).prompt

    def reject(self, name: str, version: str, detail: str = "") -> None:
        """Mark a candidate (or retired version) as rejected. The active version cannot be."""
        with self.db.transaction() as conn:
            row = _row(conn, name, version)
            if row["status"] == "active":
                raise RegistryError(
                    f"{name} {version} is active: roll back or promote another version first"
                )
            conn.execute(
                "UPDATE prompt_versions SET status = 'rejected' WHERE name = ? AND version = ?",
                (name, version),
            )
            _event(conn, name, version, "rejected", detail)

    def rollback(self, name: str, detail: str = "") -> Prompt:
        """Re-activate the version that was active before the current one; the current one is
        marked rejected. Repeated rollbacks walk further back through the promotions."""
        with self.db.transaction() as conn:
            current = conn.execute(
                "SELECT version FROM prompt_versions WHERE name = ? AND status = 'active'", (name,)
            ).fetchone()
            if current is None:
                raise RegistryError(f"unknown prompt {name!r}")
            activations = [
                r["version"]
                for r in conn.execute(
                    "SELECT version FROM prompt_events WHERE name = ?"
                    " AND event IN ('seeded', 'promoted', 'reactivated') ORDER BY id",
                    (name,),
                )
            ]
            previous = None
            for candidate in reversed(activations):
                if candidate == current["version"]:
                    continue
                status = _row(conn, name, candidate)["status"]
                if status == "retired":
                    previous = candidate
                    break
            if previous is None:
                raise RegistryError(f"{name} has no earlier active version to roll back to")
            conn.execute(
                "UPDATE prompt_versions SET status = 'rejected' WHERE name = ? AND version = ?",
                (name, current["version"]),
            )
            _event(conn, name, current["version"], "rolled_back", detail)
            conn.execute(
                "UPDATE prompt_versions SET status = 'active' WHERE name = ? AND version = ?",
                (name, previous),
            )
            _event(conn, name, previous, "reactivated", f"rollback from {current['version']}")
            return _version(_row(conn, name, previous)).prompt

    def record_reward(self, name: str, version: str, reward: float) -> bool:
        """Add one reward to the version's running statistics (count, mean, variance).
        Returns False (and records nothing) for a version the registry does not know."""
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT n, mean, m2 FROM prompt_versions WHERE name = ? AND version = ?",
                (name, version),
            ).fetchone()
            if row is None:
                return False
            n = row["n"] + 1
            delta = reward - row["mean"]
            mean = row["mean"] + delta / n
            m2 = row["m2"] + delta * (reward - mean)
            conn.execute(
                "UPDATE prompt_versions SET n = ?, mean = ?, m2 = ? WHERE name = ? AND version = ?",
                (n, mean, m2, name, version),
            )
        return True

    def adopt_rewards(self, name: str, label: str, version: str) -> int:
        """Attribute to `version` the rewards recorded (in the rewards table) under a provisional
        `label` — a text evaluated before it was registered — and add them to its statistics.
        Returns how many rewards were adopted."""
        with self.db.transaction() as conn:
            _row(conn, name, version)
            rewards = [
                r["reward"]
                for r in conn.execute(
                    "SELECT reward FROM rewards WHERE name = ? AND version = ?", (name, label)
                )
            ]
            conn.execute(
                "UPDATE rewards SET version = ? WHERE name = ? AND version = ?",
                (version, name, label),
            )
        for reward in rewards:
            self.record_reward(name, version, reward)
        return len(rewards)

    # -- internals ---------------------------------------------------------------------------

    def _seed(self, seeds: Mapping[str, Prompt]) -> None:
        """Insert the code's seed prompts that are missing. A new seed of a name whose active
        version is itself a seed becomes active; next to a learned active version it waits as a
        candidate (the optimizer decides)."""
        with self.db.transaction() as conn:
            for seed in seeds.values():
                if _find(conn, seed.name, seed.version) is not None:
                    continue
                same_text = conn.execute(
                    "SELECT version FROM prompt_versions WHERE name = ? AND text = ?",
                    (seed.name, seed.text),
                ).fetchone()
                if same_text is not None:
                    continue
                active = conn.execute(
                    "SELECT version, source FROM prompt_versions WHERE name = ? AND status = 'active'",
                    (seed.name,),
                ).fetchone()
                status = "active" if active is None or active["source"] == "seed" else "candidate"
                if active is not None and status == "active":
                    conn.execute(
                        "UPDATE prompt_versions SET status = 'retired' WHERE name = ? AND version = ?",
                        (seed.name, active["version"]),
                    )
                    _event(conn, seed.name, active["version"], "retired", "new seed")
                conn.execute(
                    "INSERT INTO prompt_versions (name, version, text, parent, created, status,"
                    " source) VALUES (?, ?, ?, ?, ?, ?, 'seed')",
                    (
                        seed.name,
                        seed.version,
                        seed.text,
                        active["version"] if active else None,
                        time.time(),
                        status,
                    ),
                )
                _event(conn, seed.name, seed.version, "seeded" if status == "active" else "added")

    @staticmethod
    def _next_label(conn: Connection, name: str, parent: str) -> str:
        root = parent.split(".", 1)[0]
        taken = {
            r["version"]
            for r in conn.execute("SELECT version FROM prompt_versions WHERE name = ?", (name,))
        }
        k = 1 + sum(1 for v in taken if v.startswith(root + "."))
        while f"{root}.{k}" in taken:
            k += 1
        return f"{root}.{k}"


def _find(conn: Connection, name: str, version: str) -> Row | None:
    row: Row | None = conn.execute(
        "SELECT * FROM prompt_versions WHERE name = ? AND version = ?", (name, version)
    ).fetchone()
    return row


def _row(conn: Connection, name: str, version: str) -> Row:
    row = conn.execute(
        "SELECT * FROM prompt_versions WHERE name = ? AND version = ?", (name, version)
    ).fetchone()
    if row is None:
        raise RegistryError(f"prompt {name!r} has no version {version!r}")
    return row


def _event(conn: Connection, name: str, version: str, event: str, detail: str = "") -> None:
    conn.execute(
        "INSERT INTO prompt_events (name, version, event, at, detail) VALUES (?, ?, ?, ?, ?)",
        (name, version, event, time.time(), detail),
    )


def _version(row: Row) -> PromptVersion:
    data = dict(row)
    return PromptVersion(
        name=data["name"],
        version=data["version"],
        text=data["text"],
        parent=data["parent"],
        created=data["created"],
        status=data["status"],
        source=data["source"],
        note=data["note"],
        n=data["n"],
        mean=data["mean"],
        m2=data["m2"],
    )
