"""One relay of the edge-hop benchmark, as a process of its own: `benchmarks/kafka_edges.py` starts
one per path and round, so every path gets the same process set-up (its own interpreter and GIL)
and `--baseline REF` can run the worker of another commit's tree (PYTHONPATH names the tree).

    python benchmarks/hop_relay.py raw|raw_batched|mesh --bootstrap B --source A --target B ...

  raw          consume, produce, wait for the ack, commit synchronously: one record at a time
  raw_batched  the same guarantees for a batch: take what is fetched (up to 500 records), produce
               each at once, wait for all acks, commit the batch's offsets synchronously
  mesh         a NodeWorker (role consumer) with a trivial node (a TEST DOUBLE that changes
               nothing) and a delivery ledger, as deployed (a file, or Postgres with
               `--ledger postgresql://...`); its topics come from the prefix

Prints `ready` once it holds its partitions, then relays until SIGTERM or stdin closes. Only the
client library and the mesh's public API are used, so the script runs against older trees.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# run as a script, this directory would shadow the kafka_edges package with ./kafka_edges.py
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

from confluent_kafka import Consumer, Message, Producer, TopicPartition  # noqa: E402
from langchain_core.runnables import RunnableConfig  # noqa: E402

from foundation.settings import Settings  # noqa: E402
from graph.edges import StepRecord  # noqa: E402
from graph.node_worker import NodeWorker, WorkerOptions  # noqa: E402
from graph.routing import next_node  # noqa: E402
from graph.state import MeshState  # noqa: E402
from kafka_edges.config import CONSUMER_DEFAULTS, PRODUCER_DEFAULTS, with_logger  # noqa: E402
from kafka_edges.ledger import DeliveryLedger  # noqa: E402

MAX_BATCH = 500
OVERRIDES = {"session.timeout.ms": "2000", "heartbeat.interval.ms": "400"}


def trivial_step(
    node: str, state: MeshState, config: RunnableConfig | None = None
) -> tuple[dict[str, Any], StepRecord]:
    """TEST DOUBLE node: changes nothing, routes as the graph does (consumer -> sandbox)."""
    return {}, StepRecord(node=node, next_node=next_node(node, state), state=state, latency_ms=0.0)


class RawRelay:
    """Plain confluent-kafka relay source -> target with a worker's guarantees: a record's offset
    is committed (synchronously) only after its copy is acknowledged."""

    def __init__(self, args: argparse.Namespace, *, batched: bool) -> None:
        conf = {**CONSUMER_DEFAULTS, "bootstrap.servers": args.bootstrap, "group.id": args.group}
        conf.update(OVERRIDES)
        self.consumer = Consumer(with_logger(conf))
        producer_conf = {**PRODUCER_DEFAULTS, "bootstrap.servers": args.bootstrap}
        self.producer = Producer(with_logger(producer_conf))
        self.target = args.target
        self.batched = batched
        self.assigned = threading.Event()
        self.consumer.subscribe([args.source], on_assign=lambda c, p: self.assigned.set())

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            msg = self.consumer.poll(0.05)
            if msg is None:
                continue
            batch = [msg]
            while self.batched and len(batch) < MAX_BATCH:
                more = self.consumer.poll(0)
                if more is None:
                    break
                batch.append(more)
            self._relay([m for m in batch if not m.error()])
        self.consumer.close()

    def _relay(self, batch: list[Message]) -> None:
        if not batch:
            return
        for msg in batch:
            self.producer.produce(
                self.target, value=msg.value(), key=msg.key(), headers=msg.headers()
            )
        if self.producer.flush(10) != 0:
            raise RuntimeError("raw relay: no ack")
        after: dict[tuple[str, int], int] = {}
        for msg in batch:
            where = (msg.topic() or "", msg.partition() or 0)
            after[where] = max(after.get(where, 0), (msg.offset() or 0) + 1)
        offsets = [TopicPartition(t, p, o) for (t, p), o in after.items()]
        self.consumer.commit(offsets=offsets, asynchronous=False)


def _mesh(args: argparse.Namespace, stop: threading.Event) -> None:
    settings = Settings(
        kafka_bootstrap=args.bootstrap, kafka_config=OVERRIDES, kafka_group_prefix=args.group
    )
    shared = args.ledger.startswith(("postgresql://", "postgres://"))
    worker = NodeWorker(
        "consumer",
        settings,
        trivial_step,
        WorkerOptions(topic_prefix=args.prefix, partitions=args.partitions),
        ledger=DeliveryLedger.for_settings(
            settings.model_copy(update={"database_url": args.ledger})
        )
        if shared
        else DeliveryLedger(args.ledger),
    )
    with worker:
        if not worker.wait_joined(60):
            raise SystemExit("the mesh worker did not join its group")
        print("ready", flush=True)
        stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=("raw", "raw_batched", "mesh"))
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--source", help="raw relays: the input topic")
    parser.add_argument("--target", help="raw relays: the output topic")
    parser.add_argument("--group", required=True)
    parser.add_argument("--prefix", default="", help="mesh: the topic prefix")
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument(
        "--ledger", default=":memory:", help="mesh: the delivery ledger file, or a Postgres URL"
    )
    args = parser.parse_args()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())

    def stop_when_stdin_closes() -> None:  # the benchmark went away
        sys.stdin.read()
        stop.set()

    threading.Thread(target=stop_when_stdin_closes, daemon=True).start()
    if args.kind == "mesh":
        _mesh(args, stop)
        return
    relay = RawRelay(args, batched=args.kind == "raw_batched")
    thread = threading.Thread(target=relay.run, args=(stop,))
    thread.start()
    if not relay.assigned.wait(60):  # the relay thread's polls bring the assignment
        raise SystemExit("the relay did not join its group")
    print("ready", flush=True)
    thread.join()


if __name__ == "__main__":
    main()
