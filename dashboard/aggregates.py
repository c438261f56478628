"""Rolling aggregates over the telemetry and report streams, in bounded memory.

`Aggregator` is fed raw record values by the consumer thread and read (as a JSON-ready
snapshot) by the web handlers; every method takes its lock, so both sides can call it from any
thread. Counters are exact for the life of the process; series, lists and the task table are
bounded (oldest entries are dropped first).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dashboard.schema import (
    Outcome,
    RecordError,
    ReportRecord,
    TelemetryRecord,
    epoch,
    parse_report,
    parse_telemetry,
)
from graph.topics import AI_REPORTS, AI_TELEMETRY
from graph.wire import BatchAuditMessage
from prompt_registry import adapter_prompt

MAX_TASKS = 20_000
"""Tasks remembered (for de-duplication and outcome updates); older ones are forgotten."""
MAX_EVENT_KEYS = 50_000
"""Telemetry event identities remembered to drop redelivered duplicates (at-least-once)."""
LATENCY_WINDOW = 500
"""Recent steps per agent used for the latency percentiles."""
REWARD_POINTS = 300
"""Finished tasks shown on the reward-over-time chart."""
REWARD_MEAN_WINDOW = 10
"""Tasks in the reward chart's rolling mean."""
THROUGHPUT_BARS = 30
"""Most bars on the throughput chart: its bucket grows with the time the data spans."""
THROUGHPUT_BUCKETS_S = (10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400)
"""The bucket lengths the throughput chart may use (the shortest that fits the data)."""
RATE_WINDOW_S = 60.0
"""Window of the tasks-per-minute figure."""
IN_PROGRESS_IDLE_S = 600.0
"""A started task with no step for this long no longer counts as in progress."""
STALL_FACTOR = 3.0
"""The mesh is idle once no step was seen for this many times its longest recent step..."""
STALL_MIN_S = 30.0
"""...and at least this long: then nothing is running, and unfinished tasks count as stalled."""
LIST_LIMIT = 25
"""Reports, failures, batch audits and rejected messages listed in a snapshot (newest first)."""
DETAIL_LIMIT = 1_000
"""Finished tasks whose detail (attempts, code, review) is kept for the task view."""


@dataclass
class _Task:
    task_id: str
    run_id: str | None
    last_seen: float
    finished_at: float | None = None
    outcome: Outcome | None = None
    reward: float | None = None
    attempts: int | None = None
    reward_plotted: bool = False
    reported: bool = False
    failure_listed: bool = False
    failed_at: str | None = None


@dataclass
class _Agent:
    steps: int = 0
    latency_sum: float = 0.0
    latency_recent: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    latency_last: float = 0.0
    tokens: int = 0
    memory_hits: int = 0
    steps_with_hits: int = 0
    failed_steps: int = 0
    last_seen: float = 0.0


@dataclass
class _PromptVersion:
    steps: int = 0
    first_seen: float = 0.0
    last_seen: float = 0.0


class _LRUSet:
    """A set that forgets its oldest members past `limit`."""

    def __init__(self, limit: int) -> None:
        self._items: OrderedDict[Any, None] = OrderedDict()
        self._limit = limit

    def add(self, item: Any) -> bool:
        """Add `item`; False if it was already there."""
        if item in self._items:
            self._items.move_to_end(item)
            return False
        self._items[item] = None
        if len(self._items) > self._limit:
            self._items.popitem(last=False)
        return True


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = q * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _clip(text: str | None, limit: int = 500) -> str | None:
    if text is None:
        return None
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Aggregator:
    """Rolling aggregates of the mesh's telemetry and supervisor reports."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._version = 0
        self._snapshot: tuple[int, float, dict[str, Any]] | None = None
        self._source: dict[str, Any] = {"state": "starting", "detail": "", "bootstrap": None}
        # counters
        self._events = 0
        self._duplicates = 0
        self._reports = 0
        self._batches = 0
        self._finished = 0
        self._outcomes: Counter[str] = Counter()
        self._verdicts: Counter[str] = Counter()
        self._tokens = 0
        self._memory_hits = 0
        self._rejected_total = 0
        self._reward_sum = 0.0
        self._reward_count = 0
        # bounded state
        self._tasks: OrderedDict[tuple[str | None, str], _Task] = OrderedDict()
        self._open: OrderedDict[tuple[str | None, str], _Task] = OrderedDict()
        self._finish_times: deque[float] = deque(maxlen=MAX_TASKS)
        self._last_run_of: OrderedDict[str, str] = OrderedDict()
        self._event_keys = _LRUSet(MAX_EVENT_KEYS)
        self._batch_ids = _LRUSet(MAX_TASKS)
        self._last_step_at: float | None = None
        self._agents: dict[str, _Agent] = {}
        self._prompts: dict[tuple[str, str], _PromptVersion] = {}
        self._reward_points: deque[tuple[float, float, str]] = deque(maxlen=REWARD_POINTS)
        self._details: OrderedDict[tuple[str | None, str], dict[str, Any]] = OrderedDict()
        self._report_list: deque[dict[str, Any]] = deque(maxlen=LIST_LIMIT)
        self._batch_list: deque[dict[str, Any]] = deque(maxlen=LIST_LIMIT)
        self._failures: deque[dict[str, Any]] = deque(maxlen=LIST_LIMIT)
        self._rejected: deque[dict[str, Any]] = deque(maxlen=LIST_LIMIT)

    # ------------------------------------------------------------------ feeding

    @property
    def version(self) -> int:
        """Bumped on every change; a snapshot with the same version has the same data."""
        with self._lock:
            return self._version

    def set_source(self, state: str, detail: str = "", **extra: Any) -> None:
        """Record the consumer's connection state (shown in the page header)."""
        with self._lock:
            new = {**self._source, "state": state, "detail": detail, **extra}
            if new != self._source:
                self._source = new
                self._version += 1

    def ingest(
        self, topic: str, value: bytes | str | None, *, kafka_ts: float | None = None
    ) -> bool:
        """Take one record read from `topic` (the mesh name, without a prefix); False if rejected."""
        try:
            if topic == AI_TELEMETRY:
                self.add_telemetry(parse_telemetry(value))
            elif topic == AI_REPORTS:
                report = parse_report(value)
                if isinstance(report, BatchAuditMessage):
                    self.add_batch_audit(report, kafka_ts=kafka_ts)
                else:
                    self.add_report(report, kafka_ts=kafka_ts)
            else:
                raise RecordError("unknown_topic", f"the dashboard does not read {topic!r}")
        except RecordError as exc:
            self.reject(topic, exc.reason, exc.detail)
            return False
        return True

    def reject(self, topic: str, reason: str, detail: str) -> None:
        with self._lock:
            self._rejected_total += 1
            self._rejected.appendleft(
                {
                    "at": self._clock(),
                    "topic": topic,
                    "reason": reason,
                    "detail": _clip(detail, 300),
                }
            )
            self._version += 1

    def add_telemetry(self, event: TelemetryRecord) -> None:
        at = epoch(event.timestamp)
        identity = (event.run_id, event.task_id, event.agent, event.attempt, at, event.latency_ms)
        with self._lock:
            if event.task_id is not None and not self._event_keys.add(identity):
                self._duplicates += 1
                self._version += 1
                return
            self._events += 1
            self._last_step_at = max(self._last_step_at or at, at)
            self._tokens += event.tokens_used
            self._memory_hits += event.memory_hits
            agent = self._agents.setdefault(event.agent, _Agent())
            agent.steps += 1
            agent.latency_sum += event.latency_ms
            agent.latency_recent.append(event.latency_ms)
            if at >= agent.last_seen:  # partitions interleave: "last" is the newest by event time
                agent.latency_last = event.latency_ms
            agent.tokens += event.tokens_used
            agent.memory_hits += event.memory_hits
            agent.steps_with_hits += 1 if event.memory_hits else 0
            agent.last_seen = max(agent.last_seen, at)
            if event.status == "failed":
                agent.failed_steps += 1
            if event.prompt_version:
                self._count_prompt(event.agent, event.prompt_version, at)
            if event.adapter_version:
                self._count_prompt(adapter_prompt(event.agent), event.adapter_version, at)
            if event.task_id is not None:
                task = self._task(event.task_id, event.run_id, at)
                if event.attempt is not None:
                    task.attempts = max(task.attempts or 0, event.attempt)
                if event.status == "failed" and task.failed_at is None:
                    task.failed_at = event.agent  # the first step that failed the task
                if event.finishes_task:
                    self._finish(task, at)
                    if event.reward_score is not None:
                        self._set_reward(task, event.reward_score)
                    if event.outcome is not None:
                        self._set_outcome(task, event.outcome)
                    if event.outcome == "failed":
                        self._list_failure(
                            task,
                            at,
                            task.failed_at or event.agent,
                            f"task ended with status {event.status}",
                        )
            self._version += 1

    def add_report(self, report: ReportRecord, *, kafka_ts: float | None = None) -> None:
        now = self._clock()
        at = epoch(report.timestamp) if report.timestamp else (kafka_ts or now)
        with self._lock:
            run_id = report.run_id or self._last_run_of.get(report.task_id)
            task = self._task(report.task_id, run_id, at)
            if task.reported:
                self._duplicates += 1
                self._version += 1
                return
            task.reported = True
            self._reports += 1
            if report.verdict:
                self._verdicts[report.verdict] += 1
            self._finish(task, at)
            if report.reward is not None:
                self._set_reward(task, report.reward)
            if report.outcome is not None:
                self._set_outcome(task, report.outcome)
            self._report_list.appendleft(
                {
                    "at": at,
                    "task_id": report.task_id,
                    "run_id": run_id,
                    "verdict": report.verdict,
                    "summary": _clip(report.summary),
                    "findings": [_clip(f, 200) for f in report.findings[:8]],
                    "wall_time_s": report.wall_time_s,
                    "tokens_used": report.tokens_used,
                    "reward": report.reward if report.reward is not None else task.reward,
                    "attempts": report.attempts if report.attempts is not None else task.attempts,
                    "outcome": task.outcome,
                    "has_detail": report.detail is not None,
                }
            )
            if report.detail is not None:
                self._keep_detail(task, at, report)
            if report.outcome == "failed":
                reason = report.reason or (
                    report.findings[0] if report.findings else report.summary
                )
                source = report.failed_at or task.failed_at or "report"
                self._list_failure(task, at, source, reason, replace=True)
            self._version += 1

    def add_batch_audit(self, message: BatchAuditMessage, *, kafka_ts: float | None = None) -> None:
        """The supervisor's audit of a batch: listed on its own, never counted as a task."""
        audit = message.audit
        at = kafka_ts or self._clock()
        with self._lock:
            if not self._batch_ids.add(audit.batch_id):
                self._duplicates += 1
                self._version += 1
                return
            self._batches += 1
            self._batch_list.appendleft(
                {
                    "at": at,
                    "batch_id": audit.batch_id,
                    "verdict": audit.verdict,
                    "tasks": audit.tasks,
                    "pass_rate": audit.pass_rate,
                    "mean_reward": audit.mean_reward,
                    "reward_trend": audit.reward_trend,
                    "tokens_used": audit.tokens_used,
                    "wall_time_s": audit.wall_time_s,
                    "summary": _clip(audit.summary),
                    "anomalies": [_clip(a, 200) for a in audit.anomalies[:8]],
                }
            )
            self._version += 1

    def task_detail(self, task_id: str, run_id: str | None = None) -> dict[str, Any] | None:
        """A reported task's detail (its latest run unless `run_id` is given); None if unknown."""
        with self._lock:
            if run_id is None:
                run_id = self._last_run_of.get(task_id)
            return self._details.get((run_id, task_id))

    # internal helpers below expect the lock to be held

    def _task(self, task_id: str, run_id: str | None, at: float) -> _Task:
        if run_id is not None:
            self._last_run_of[task_id] = run_id
            self._last_run_of.move_to_end(task_id)
            if len(self._last_run_of) > MAX_TASKS:
                self._last_run_of.popitem(last=False)
        key = (run_id, task_id)
        task = self._tasks.get(key)
        if task is None and run_id is not None and (None, task_id) in self._tasks:
            # a report without a run id came first: it belongs to this run
            task = self._tasks.pop((None, task_id))
            task.run_id = run_id
            self._tasks[key] = task
            if self._open.pop((None, task_id), None) is not None:
                self._open[key] = task
        if task is None:
            task = self._tasks[key] = self._open[key] = _Task(
                task_id=task_id, run_id=run_id, last_seen=at
            )
            if len(self._tasks) > MAX_TASKS:
                old_key, _ = self._tasks.popitem(last=False)
                self._open.pop(old_key, None)
        else:
            self._tasks.move_to_end(key)
            task.last_seen = max(task.last_seen, at)
        return task

    def _keep_detail(self, task: _Task, at: float, report: ReportRecord) -> None:
        key = (task.run_id, task.task_id)
        self._details[key] = {
            **(report.detail or {}),
            "task_id": task.task_id,
            "at": at,
            "outcome": task.outcome,
            "failed_at": report.failed_at,
            "reason": _clip(report.reason, 400),
        }
        self._details.move_to_end(key)
        if len(self._details) > DETAIL_LIMIT:
            self._details.popitem(last=False)

    def _finish(self, task: _Task, at: float) -> None:
        if task.finished_at is not None:
            return
        task.finished_at = at
        self._open.pop((task.run_id, task.task_id), None)
        self._finish_times.append(at)
        self._finished += 1
        self._outcomes["unknown"] += 1

    def _set_outcome(self, task: _Task, outcome: Outcome) -> None:
        if task.finished_at is None or task.outcome == outcome:
            return
        old = task.outcome or "unknown"
        task.outcome = outcome
        self._outcomes[old] -= 1
        self._outcomes[outcome] += 1

    def _set_reward(self, task: _Task, reward: float) -> None:
        task.reward = reward
        if not task.reward_plotted and task.finished_at is not None:
            task.reward_plotted = True
            self._reward_sum += reward
            self._reward_count += 1
            self._reward_points.append((task.finished_at, reward, task.task_id))

    def _list_failure(
        self, task: _Task, at: float, source: str, reason: str | None, *, replace: bool = False
    ) -> None:
        entry = {
            "at": at,
            "task_id": task.task_id,
            "run_id": task.run_id,
            "source": source,
            "reason": _clip(reason or "failed", 400),
        }
        if task.failure_listed:
            if not replace:
                return
            for i, old in enumerate(self._failures):
                if old["task_id"] == task.task_id and old["run_id"] == task.run_id:
                    del self._failures[i]
                    break
        task.failure_listed = True
        self._failures.appendleft(entry)

    # ------------------------------------------------------------------ reading

    def snapshot(self, max_age_s: float = 1.0) -> dict[str, Any]:
        """The aggregates as a JSON-ready dict (cached per version, refreshed at least every `max_age_s`)."""
        now = self._clock()
        with self._lock:
            cached = self._snapshot
            if cached is not None and cached[0] == self._version and now - cached[1] < max_age_s:
                return cached[2]
            snap = self._build(now)
            self._snapshot = (self._version, now, snap)
            return snap

    def _build(self, now: float) -> dict[str, Any]:
        return {
            "version": self._version,
            "generated_at": now,
            "source": dict(self._source),
            "totals": self._totals(now),
            "verdicts": {v: self._verdicts[v] for v in ("ok", "warn", "flag")},
            "reward": self._reward_series(),
            "throughput": self._throughput(now),
            "agents": self._agent_rows(),
            "prompt_versions": self._prompt_rows(),
            "reports": sorted(self._report_list, key=lambda r: r["at"], reverse=True),
            "batches": list(self._batch_list),
            "failures": sorted(self._failures, key=lambda f: f["at"], reverse=True),
            "rejected": list(self._rejected),
        }

    def _totals(self, now: float) -> dict[str, Any]:
        passed, failed = self._outcomes["passed"], self._outcomes["failed"]
        decided = passed + failed
        # a few seconds of clock skew between a producer and this process still count as recent
        recent = sum(1 for at in self._finish_times if now - RATE_WINDOW_S <= at <= now + 5.0)
        unfinished = sum(1 for t in self._open.values() if now - t.last_seen <= IN_PROGRESS_IDLE_S)
        stall_window = self._stall_window()
        idle = self._last_step_at is None or now - self._last_step_at > stall_window
        mean_reward = self._reward_sum / self._reward_count if self._reward_count else None
        return {
            "events": self._events,
            "duplicates": self._duplicates,
            "reports": self._reports,
            "batches": self._batches,
            "tasks_finished": self._finished,
            "tasks_passed": passed,
            "tasks_failed": failed,
            "tasks_unknown": self._outcomes["unknown"],
            "tasks_in_progress": 0 if idle else unfinished,
            "tasks_stalled": unfinished if idle else 0,
            "stall_window_s": stall_window,
            "pass_rate": passed / decided if decided else None,
            "tasks_per_min": recent * 60.0 / RATE_WINDOW_S,
            "mean_reward": mean_reward,
            "tokens": self._tokens,
            "memory_hits": self._memory_hits,
            "rejected": self._rejected_total,
        }

    def _reward_series(self) -> list[dict[str, Any]]:
        points = sorted(self._reward_points)
        rewards = [r for _, r, _ in points]
        series = []
        for i, (at, reward, task_id) in enumerate(points):
            window = rewards[max(0, i + 1 - REWARD_MEAN_WINDOW) : i + 1]
            series.append(
                {"t": at, "reward": reward, "mean": sum(window) / len(window), "task_id": task_id}
            )
        return series

    def _stall_window(self) -> float:
        """How long the mesh may be silent while a step still runs: a step publishes its
        telemetry when it ends, so silence shorter than a few of the longest steps means nothing."""
        longest_ms = max(
            (max(a.latency_recent, default=0.0) for a in self._agents.values()), default=0.0
        )
        return min(max(STALL_FACTOR * longest_ms / 1000.0, STALL_MIN_S), IN_PROGRESS_IDLE_S)

    def _throughput(self, now: float) -> dict[str, Any]:
        """Finished tasks per bucket, from the first finished task to now, in at most
        THROUGHPUT_BARS buckets of the shortest length that fits."""
        finished = [
            (t.finished_at, t.outcome or "unknown")
            for t in self._tasks.values()
            if t.finished_at is not None
        ]
        if not finished:
            return {"bucket_s": THROUGHPUT_BUCKETS_S[0], "buckets": []}
        start = min(at for at, _ in finished)
        end = max(now, max(at for at, _ in finished))
        bucket_s = next(
            (b for b in THROUGHPUT_BUCKETS_S if (end - start) / b < THROUGHPUT_BARS),
            THROUGHPUT_BUCKETS_S[-1],
        )
        last = int(end // bucket_s)
        first = max(int(start // bucket_s), last - THROUGHPUT_BARS + 1)
        counts: dict[int, Counter[str]] = {}
        for at, outcome in finished:
            if int(at // bucket_s) >= first:
                counts.setdefault(int(at // bucket_s), Counter())[outcome] += 1
        buckets = [
            {
                "t": index * bucket_s,
                "passed": counts.get(index, Counter())["passed"],
                "failed": counts.get(index, Counter())["failed"],
                "unknown": counts.get(index, Counter())["unknown"],
            }
            for index in range(first, last + 1)
        ]
        return {"bucket_s": bucket_s, "buckets": buckets}

    def _agent_rows(self) -> list[dict[str, Any]]:
        rows = []
        for name, a in sorted(self._agents.items()):
            recent_lat = list(a.latency_recent)
            rows.append(
                {
                    "agent": name,
                    "steps": a.steps,
                    "latency_mean_ms": a.latency_sum / a.steps if a.steps else 0.0,
                    "latency_p50_ms": statistics.median(recent_lat) if recent_lat else 0.0,
                    "latency_p95_ms": _percentile(recent_lat, 0.95),
                    "latency_last_ms": a.latency_last,
                    "tokens_total": a.tokens,
                    "tokens_mean": a.tokens / a.steps if a.steps else 0.0,
                    "memory_hits": a.memory_hits,
                    "memory_hit_rate": a.steps_with_hits / a.steps if a.steps else 0.0,
                    "failed_steps": a.failed_steps,
                    "last_seen": a.last_seen,
                }
            )
        return rows

    def _count_prompt(self, name: str, version: str, at: float) -> None:
        """One more step that used `version` of `name` (an agent, or its adapter)."""
        prompt = self._prompts.get((name, version))
        if prompt is None:
            prompt = self._prompts[(name, version)] = _PromptVersion(first_seen=at)
        prompt.steps += 1
        prompt.first_seen = min(prompt.first_seen, at)
        prompt.last_seen = max(prompt.last_seen, at)

    def _prompt_rows(self) -> list[dict[str, Any]]:
        current: dict[str, tuple[float, str]] = {}
        for (agent_name, version), p in self._prompts.items():
            if agent_name not in current or p.last_seen > current[agent_name][0]:
                current[agent_name] = (p.last_seen, version)
        return [
            {
                "agent": agent_name,
                "version": version,
                "steps": p.steps,
                "first_seen": p.first_seen,
                "last_seen": p.last_seen,
                "current": current[agent_name][1] == version,
            }
            for (agent_name, version), p in sorted(
                self._prompts.items(), key=lambda kv: (kv[0][0], -kv[1].last_seen)
            )
        ]
