"""TEST DOUBLE process: a NodeWorker running the stand-in node step (see kafka_stand_in.py).

    python tests/kafka/kafka_stand_in_worker.py --role consumer --bootstrap H:P --prefix P. \
        --group-prefix G --kafka-config '{"session.timeout.ms": "2000"}' [--database-url URL]

Prints "JOINED" once it has its partition assignment, runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kafka_stand_in import stand_in_step

from foundation.settings import Settings
from graph.node_worker import NodeWorker, WorkerOptions


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--role", required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--prefix", default="")
    parser.add_argument("--group-prefix", default="aimesh")
    parser.add_argument("--kafka-config", default="{}")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--data-dir", default=".aimesh")
    parser.add_argument("--database-url", default=None, help="the mesh's shared Postgres")
    args = parser.parse_args()
    settings = Settings(
        kafka_bootstrap=args.bootstrap,
        kafka_config=json.loads(args.kafka_config),
        kafka_group_prefix=args.group_prefix,
        data_dir=args.data_dir,
        database_url=args.database_url,
    )
    worker = NodeWorker(
        args.role,
        settings,
        stand_in_step,
        WorkerOptions(topic_prefix=args.prefix, concurrency=args.concurrency),
    )

    def announce() -> None:
        if worker.wait_joined(60):
            print("JOINED", flush=True)

    threading.Thread(target=announce, daemon=True).start()
    stats = worker.run()
    print("STOPPED", json.dumps(stats.snapshot()), flush=True)


if __name__ == "__main__":
    main()
