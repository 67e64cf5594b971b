#!/usr/bin/env python3
"""Write a made-up history of N Tasks as `taskmill get -o json` would: for
timing `taskmill replay` (docs/replay.md), not for any figure about Taskmill.

    hack/replay-history.py 100000 > /tmp/history.json
    time taskmill replay -f /tmp/history.json --order reverse-chronological

Tasks arrive evenly over an hour on 64 worker slots (about 80 % busy), of
three types in two queues with priorities 0-2; one in ten fails once first.
"""

from __future__ import annotations

import heapq
import json
import random
import sys
from datetime import UTC, datetime

T0 = 1_800_000_000.0
SLOTS = 64


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    rng = random.Random(1)
    free = [T0] * SLOTS  # when each slot is next free (FIFO on the slots)
    items = []
    for i in range(count):
        arrival = float(int(T0 + 3600 * i / count))
        attempts = []
        at = arrival
        for outcome in (["Failed"] if rng.random() < 0.1 else []) + ["Succeeded"]:
            start = max(at, heapq.heappop(free))
            end = start + rng.uniform(0.2, 3.0)
            heapq.heappush(free, end)
            attempts.append((start, end, outcome))
            at = end + 1.0
        history = [
            {
                "attempt": n + 1,
                "worker": f"w{n % 4}",
                "startedAt": iso(s),
                "finishedAt": iso(e),
                "outcome": o,
            }
            for n, (s, e, o) in enumerate(attempts)
        ]
        items.append(
            {
                "apiVersion": "taskmill.dev/v1alpha1",
                "kind": "Task",
                "metadata": {
                    "name": f"t{i:06d}",
                    "namespace": "jobs",
                    "uid": f"u{i}",
                    "creationTimestamp": iso(arrival).replace(".000", ""),
                },
                "spec": {
                    "type": rng.choice(["resize", "email", "report"]),
                    "queue": rng.choice(["default", "bulk"]),
                    "priority": rng.randint(0, 2),
                },
                "status": {
                    "phase": "Succeeded",
                    "attempts": len(attempts),
                    "startedAt": history[0]["startedAt"],
                    "finishedAt": history[-1]["finishedAt"],
                    "history": history,
                },
            }
        )
    json.dump({"apiVersion": "v1", "kind": "List", "items": items}, sys.stdout)


if __name__ == "__main__":
    main()
