"""AgentMemory: the agents' persistent memory, over mem0 `Memory`, fully offline.

What is stored (mem0 user_id = the namespace, agent_id = the agent that reads it back, and
metadata["kind"]):

| kind            | agent_id   | written when                                   | read by            |
|-----------------|------------|------------------------------------------------|--------------------|
| `task`          | `producer` | the producer publishes a task                  | `coverage()`       |
| `fix_recipe`    | `consumer` | an attempt passes after a failed one           | `recall()`         |
| `best_practice` | `consumer` | the reviewer praises a solution                | `recall()`         |
| `failure`       | `consumer` | an attempt fails (kept even if no fix follows) | `search()`, export |

How mem0 is opened (embedder, vector store, history database, telemetry off, nothing
downloaded) is `memory.mem0_setup`.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self, cast, get_args

import httpx

from foundation.settings import MemorySettings
from memory.errors import (
    AgentMemoryError,
    MemoryUnavailableError,
)
from memory.mem0_setup import ScoreScale, open_mem0
from memory.texts import best_practice_text, failure_text, fix_recipe_text, task_text

if TYPE_CHECKING:
    from mem0 import Memory

    from foundation.settings import Settings

MemoryKind = Literal["task", "fix_recipe", "best_practice", "failure"]
KINDS: tuple[MemoryKind, ...] = get_args(MemoryKind)
AGENT_OF_KIND: dict[MemoryKind, str] = {
    "task": "producer",
    "fix_recipe": "consumer",
    "best_practice": "consumer",
    "failure": "consumer",
}
RECALL_KINDS: tuple[MemoryKind, ...] = ("fix_recipe", "best_practice")
# get_all() needs a limit; this is "everything" for a namespace.
ALL = 1_000_000
log = logging.getLogger(__name__)


_STORE_UNREACHABLE: tuple[type[BaseException], ...] = (OSError, httpx.TransportError)
"""What mem0's stores raise when their server cannot be reached (connection refused, timeout)."""


class _StoreGuard:
    """mem0, with an unreachable store reported as MemoryUnavailableError (an infrastructure
    failure: a worker keeps the message and retries) instead of a raw connection error."""

    def __init__(self, memory: Any) -> None:
        self._inner = memory

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if not callable(attribute):
            return attribute

        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return attribute(*args, **kwargs)
            except _STORE_UNREACHABLE as exc:
                raise MemoryUnavailableError(
                    f"the memory store is unreachable ({type(exc).__name__}: {exc})"
                ) from exc

        return guarded


@dataclass(frozen=True)
class MemoryRecord:
    """One stored memory. `score` is the cosine similarity to the query (search results only)."""

    id: str
    kind: str
    agent_id: str | None
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: str | None = None
    updated_at: str | None = None
    score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what `export` writes, one per line)."""
        data: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "agent_id": self.agent_id,
            "text": self.text,
            "metadata": self.metadata,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }
        if self.score is not None:
            data["score"] = round(self.score, 4)
        return data


@dataclass
class Recall:
    """What the consumer gets before writing code: related best practices and fix recipes."""

    best_practices: list[str] = field(default_factory=list)
    fix_recipes: list[str] = field(default_factory=list)
    records: list[MemoryRecord] = field(default_factory=list)

    @property
    def hits(self) -> int:
        """How many memories were recalled (for the `memory_hits` telemetry field)."""
        return len(self.best_practices) + len(self.fix_recipes)

    def to_prompt(self) -> str:
        """A prompt section with the recalled memories; empty when nothing was recalled."""
        parts: list[str] = []
        if self.fix_recipes:
            parts.append("Fixes that worked on similar tasks:")
            parts += [f"- {text}" for text in self.fix_recipes]
        if self.best_practices:
            parts.append("Practices the reviewer praised on similar tasks:")
            parts += [f"- {text}" for text in self.best_practices]
        return "\n".join(parts)


class _Recorded:
    """What this process recorded in the embedded store: (namespace, kind, key) -> memory id.

    Embedded Qdrant filters payloads point by point in Python (a lookup costs about as much as
    `coverage()`: 0.4 s at 10k memories on 2 busy cores), so it is not asked whether a memory
    exists: it is single-process (locked), so this process knows what it wrote. The shared store
    is asked instead (its metadata filters are indexed).
    """

    def __init__(self) -> None:
        self._ids: dict[tuple[str, str, str], str] = {}

    def get(self, namespace: str, kind: str, key: str) -> str | None:
        return self._ids.get((namespace, kind, key))

    def put(self, namespace: str, kind: str, key: str, memory_id: str) -> None:
        self._ids[(namespace, kind, key)] = memory_id

    def forget(self, namespace: str, kind: str | None = None) -> None:
        for entry in [e for e in self._ids if e[0] == namespace and kind in (None, e[1])]:
            del self._ids[entry]


class AgentMemory:
    """Persistent agent memory over mem0. Thread-safe; one instance per process and store.

    Build it with `AgentMemory.from_settings()`; `close()` it (or use `with`).
    """

    def __init__(
        self,
        memory: Memory,
        *,
        settings: MemorySettings,
        directory: Path,
        scale: ScoreScale,
        infer: bool = False,
        lock: threading.RLock | None = None,
        owner: bool = True,
        recorded: _Recorded | None = None,
    ) -> None:
        self._mem: Memory | None = memory
        self.settings = settings
        self.directory = directory
        self.namespace = settings.namespace
        self.infer = infer
        self._scale = scale
        self._lock = lock or threading.RLock()
        self._owner = owner
        self._recorded = recorded or _Recorded()

    # ----------------------------------------------------------------- construction

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        llm_base_url: str | None = None,
    ) -> AgentMemory:
        """Open the memory the settings describe. The embedder (torch: seconds) loads at the
        first add or search, not here, so listing, counting, exporting and clearing never load it.

        `settings.memory` says where and how; `settings` also gives `data_dir` and the LLM
        endpoint (used only when infer is on); `llm_base_url` overrides `settings.llm_base_url`
        (e.g. the embedded model server's URL).
        """
        ms = settings.memory
        directory = ms.resolved_dir(settings.data_dir)
        memory, scale = open_mem0(settings, directory, llm_base_url=llm_base_url)
        return cls(memory, settings=ms, directory=directory, scale=scale, infer=ms.infer)

    @property
    def backend(self) -> str:
        """`qdrant` or `chroma`."""
        return self.settings.backend

    def namespaced(self, namespace: str) -> AgentMemory:
        """The same store under another namespace (e.g. one per experiment).

        The view shares this instance's store: closing the view only detaches it.
        """
        settings = MemorySettings.model_validate(
            {**self.settings.model_dump(), "namespace": namespace}
        )
        return AgentMemory(
            self._memory,
            settings=settings,
            directory=self.directory,
            scale=self._scale,
            infer=self.infer,
            lock=self._lock,
            owner=False,
            recorded=self._recorded,
        )

    def close(self) -> None:
        """Release the store (the Qdrant lock, the history database). Safe to call twice."""
        with self._lock:
            memory, self._mem = self._mem, None
            if memory is None or not self._owner:
                return
            memory.close()
            client = getattr(memory.vector_store, "client", None)
            if self.backend == "qdrant" and client is not None:
                client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def _memory(self) -> Memory:
        if self._mem is None:
            raise AgentMemoryError("the memory is closed")
        return cast("Memory", _StoreGuard(self._mem))

    # ----------------------------------------------------------------- what the agents call

    def record_task(self, task_id: str, category: str, difficulty: int, statement: str) -> str:
        """Store a produced task; return its memory id.

        Idempotent by task_id (see `record_fix_recipe`); `coverage` counts distinct task ids.
        """
        with self._lock:
            existing = self._recorded_id("task", "task_id", task_id)
            if existing:
                return existing
            metadata = {
                "kind": "task",
                "task_id": task_id,
                "category": category,
                "difficulty": int(difficulty),
            }
            ids = self._add(
                task_text(statement, category, difficulty), "task", metadata, infer=False
            )
            self._recorded.put(self.namespace, "task", task_id, ids[0])
            return ids[0]

    def coverage(self) -> builtins.list[tuple[str, int, int]]:
        """(category, tasks, max difficulty) per category, least covered first.

        Counts distinct task ids, so a task recorded twice counts once.
        """
        per_category: dict[str, dict[str, int]] = {}
        for record in self._get_all(kind="task"):
            meta = record.metadata
            category = str(meta.get("category", "general"))
            task_id = str(meta.get("task_id", record.id))
            difficulty = int(meta.get("difficulty", 0))
            tasks = per_category.setdefault(category, {})
            tasks[task_id] = max(difficulty, tasks.get(task_id, 0))
        rows = [(cat, len(tasks), max(tasks.values())) for cat, tasks in per_category.items()]
        return sorted(rows, key=lambda row: (row[1], row[0]))

    def recall(self, statement: str, k: int = 2) -> Recall:
        """Best practices and fix recipes for tasks similar to `statement` (at most k of each).

        Only memories with cosine similarity >= `recall_threshold` are returned, so an unrelated
        task recalls nothing. One embedding, one search.
        """
        if not statement.strip() or k <= 0:
            return Recall()
        records = self.search(
            statement,
            kind=RECALL_KINDS,
            k=max(10 * k, 30),
            min_score=self.settings.recall_threshold,
        )
        result = Recall()
        seen: set[str] = set()
        for record in records:
            if record.text in seen:
                continue
            bucket = result.fix_recipes if record.kind == "fix_recipe" else result.best_practices
            if len(bucket) < k:
                seen.add(record.text)
                bucket.append(record.text)
                result.records.append(record)
        return result

    def record_fix_recipe(
        self,
        statement: str,
        error: str,
        failed_code: str,
        fixed_code: str,
        *,
        task_id: str | None = None,
    ) -> str | None:
        """Store how a failure was fixed: the error and a short diff of what changed.

        Idempotent: the same recipe twice is stored once (for the embedded store, within this
        process, which is the only one that can open it; for the shared store, across processes).
        Returns the memory id (None when mem0's LLM extraction, if on, found nothing to keep).
        """
        text = fix_recipe_text(statement, error, failed_code, fixed_code)
        metadata: dict[str, Any] = {"kind": "fix_recipe"}
        if task_id:
            metadata["task_id"] = task_id
        return self._add_once(text, "fix_recipe", metadata)

    def record_best_practice(
        self,
        statement: str,
        critique: str,
        code: str,
        *,
        task_id: str | None = None,
        reward: float | None = None,
    ) -> str | None:
        """Store what the reviewer praised (critique and code). Idempotent like fix recipes."""
        text = best_practice_text(statement, critique, code)
        metadata: dict[str, Any] = {"kind": "best_practice"}
        if task_id:
            metadata["task_id"] = task_id
        if reward is not None:
            metadata["reward"] = round(float(reward), 4)
        return self._add_once(text, "best_practice", metadata)

    def record_failure(self, statement: str, error: str, *, task_id: str | None = None) -> str:
        """Store a failed attempt's error (verbatim, never through the LLM; idempotent)."""
        metadata: dict[str, Any] = {"kind": "failure"}
        if task_id:
            metadata["task_id"] = task_id
        memory_id = self._add_once(failure_text(statement, error), "failure", metadata, infer=False)
        assert memory_id is not None  # verbatim adds always store
        return memory_id

    def add_texts(
        self, kind: MemoryKind, texts: Sequence[str], metadata: dict[str, Any] | None = None
    ) -> builtins.list[str]:
        """Bulk-add verbatim texts of one kind in one mem0 call (no dedup, never through the LLM).

        For seeding memory (e.g. a library of best practices); returns the new memory ids.
        """
        texts = [t for t in texts if t.strip()]
        if not texts:
            return []
        meta = {**(metadata or {}), "kind": _check_kind(kind)}
        messages = [{"role": "user", "content": text} for text in texts]
        with self._lock:
            result = self._memory.add(
                messages,
                user_id=self.namespace,
                agent_id=AGENT_OF_KIND[kind],
                metadata=meta,
                infer=False,
            )
        return [str(item["id"]) for item in result.get("results", []) if item.get("id")]

    # ----------------------------------------------------------------- inspection

    def search(
        self,
        query: str,
        kind: MemoryKind | Sequence[MemoryKind] | None = None,
        k: int = 5,
        *,
        min_score: float = 0.0,
    ) -> builtins.list[MemoryRecord]:
        """The k memories most similar to `query` (cosine >= min_score), best first."""
        if not query.strip() or k <= 0:
            return []
        filters = self._filters(kind)
        threshold = self._scale.from_cosine(min_score)
        with self._lock:
            result = self._memory.search(query, top_k=k, filters=filters, threshold=threshold)
        records = [self._record(item) for item in result.get("results", [])]
        return [r for r in records if r.score is None or r.score >= min_score - 1e-6]

    def count(self, kind: MemoryKind | None = None) -> int:
        """How many memories (of `kind`) the namespace holds."""
        return len(self._get_all(kind=kind))

    def counts(self) -> dict[str, int]:
        """Memories per kind."""
        counts: dict[str, int] = {}
        for record in self._get_all():
            counts[record.kind] = counts.get(record.kind, 0) + 1
        return counts

    def export(self, path: Path | str) -> int:
        """Write every memory of the namespace to `path` as JSONL, oldest first; return the count."""
        records = sorted(self._get_all(), key=lambda r: (r.created_at or "", r.id))
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")
        tmp.replace(target)
        return len(records)

    def clear(self, kind: MemoryKind | None = None) -> int:
        """Delete the namespace's memories (of `kind`, or all); return how many were deleted."""
        with self._lock:
            records = self._get_all(kind=kind)
            self._recorded.forget(self.namespace, kind)
            if kind is None:
                if records:
                    self._memory.delete_all(user_id=self.namespace)
            else:
                for record in records:
                    self._memory.delete(record.id)
            return len(records)

    def list(self, kind: MemoryKind | None = None, limit: int = 50) -> builtins.list[MemoryRecord]:
        """The most recent memories (of `kind`), newest first."""
        records = self._get_all(kind=kind)
        records.sort(key=lambda r: (r.created_at or "", r.id), reverse=True)
        return records[: max(limit, 0)]

    # ----------------------------------------------------------------- internals

    def _filters(
        self,
        kind: MemoryKind | Sequence[MemoryKind] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        filters: dict[str, Any] = {"user_id": self.namespace}
        if isinstance(kind, str):
            filters["kind"] = _check_kind(kind)
        elif kind is not None:
            kinds = [_check_kind(k) for k in kind]
            filters["kind"] = kinds[0] if len(kinds) == 1 else {"in": kinds}
        filters.update(extra or {})
        return filters

    def _get_all(
        self,
        kind: MemoryKind | None = None,
        extra: dict[str, Any] | None = None,
        limit: int = ALL,
    ) -> builtins.list[MemoryRecord]:
        filters = self._filters(kind, extra)
        with self._lock:
            # show_expired: no expiry is used, and it makes mem0 fetch exactly `limit` rows.
            result = self._memory.get_all(filters=filters, top_k=limit, show_expired=True)
        return [self._record(item) for item in result.get("results", [])]

    def _add(
        self, text: str, kind: MemoryKind, metadata: dict[str, Any], *, infer: bool
    ) -> builtins.list[str]:
        result = self._memory.add(
            text,
            user_id=self.namespace,
            agent_id=AGENT_OF_KIND[kind],
            metadata=metadata,
            infer=infer,
        )
        ids = [str(item["id"]) for item in result.get("results", []) if item.get("id")]
        if not ids and not infer:
            raise AgentMemoryError(f"mem0 stored nothing for a {kind} memory")
        return ids

    def _add_once(
        self, text: str, kind: MemoryKind, metadata: dict[str, Any], *, infer: bool | None = None
    ) -> str | None:
        """Add unless the same text was recorded before (its md5 is kept as `source_md5`).

        With infer on, mem0's LLM extracts what to keep; if the LLM call fails (endpoint down,
        context too small for mem0's ~8k-token extraction prompt), the text is stored verbatim.
        """
        digest = hashlib.md5(text.encode()).hexdigest()
        metadata = {**metadata, "source_md5": digest}
        with self._lock:
            existing = self._recorded_id(kind, "source_md5", digest)
            if existing:
                return existing
            if self.infer if infer is None else infer:
                from mem0.exceptions import LLMError

                try:
                    ids = self._add(text, kind, metadata, infer=True)
                except LLMError as e:
                    reason = " ".join(str(e).split())[:200]
                    log.warning("mem0 LLM extraction failed, %s stored verbatim: %s", kind, reason)
                    ids = self._add(text, kind, metadata, infer=False)
            else:
                ids = self._add(text, kind, metadata, infer=False)
            if ids:
                self._recorded.put(self.namespace, kind, digest, ids[0])
            return ids[0] if ids else None

    def _recorded_id(self, kind: MemoryKind, field: str, value: str) -> str | None:
        """The id of a memory of `kind` whose metadata `field` is `value`, if one is stored."""
        if self.backend == "qdrant":
            return self._recorded.get(self.namespace, kind, value)
        existing = self._get_all(kind=kind, extra={field: value}, limit=1)
        return existing[0].id if existing else None

    def _record(self, item: dict[str, Any]) -> MemoryRecord:
        metadata = dict(item.get("metadata") or {})
        score = item.get("score")
        return MemoryRecord(
            id=str(item["id"]),
            kind=str(metadata.get("kind", "unknown")),
            agent_id=item.get("agent_id"),
            text=str(item.get("memory", "")),
            metadata=metadata,
            created_at=item.get("created_at"),
            updated_at=item.get("updated_at"),
            score=None if score is None else self._scale.to_cosine(float(score)),
        )


def _check_kind(kind: str) -> MemoryKind:
    if kind not in KINDS:
        raise ValueError(f"unknown memory kind {kind!r}: one of {', '.join(KINDS)}")
    return cast(MemoryKind, kind)
