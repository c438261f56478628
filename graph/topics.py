"""The mesh's Kafka topic names (the graph's edges on the wire; which node reads which is in
`graph.routing`)."""

from __future__ import annotations

from kafka_edges.dead_letters import DEAD_LETTER_TOPIC

AI_REQUESTS = "ai_requests"
"""Task requests for the producer."""
AI_SERVER_TASKS = "ai_server_tasks"
"""Tasks for the LangGraph server's intake: each becomes one run on the server (workers never
read it, so a task published once runs once whichever of them are attached)."""
AI_TOPIC = "ai_topic"
"""Tasks waiting for a solution (first attempts and retries with the sandbox's feedback)."""
AI_SOLUTIONS = "ai_solutions"
"""Candidate code from the consumer, waiting for the sandbox."""
AI_VERIFIED = "ai_verified_solutions"
"""Sandboxed solutions (passed, or out of attempts), waiting for the reviewer."""
AI_REVIEWS = "ai_reviews"
"""Reviews (reward + critique), waiting for the supervisor's audit."""
AI_REPORTS = "ai_reports"
"""The supervisor's reports: one per finished task (and one audit per batch)."""
AI_TELEMETRY = "ai_telemetry"
"""One telemetry event per node step (the dashboard's feed)."""
AI_DEAD_LETTER = DEAD_LETTER_TOPIC
"""Malformed or poison messages, with the reason."""

ALL_TOPICS: tuple[str, ...] = (
    AI_REQUESTS,
    AI_SERVER_TASKS,
    AI_TOPIC,
    AI_SOLUTIONS,
    AI_VERIFIED,
    AI_REVIEWS,
    AI_REPORTS,
    AI_TELEMETRY,
    AI_DEAD_LETTER,
)
