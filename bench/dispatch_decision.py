"""Cost of one dispatch decision as the number of pending Tasks grows.

Fills the pure dispatcher with N pending Tasks spread over namespaces,
queues, types and priorities (a rate-limited and a concurrency-limited queue
among them), then times ``take`` of one Task at a time, each followed by
``finished``, as the operator does. A decision must not cost more with more
Tasks waiting: the dispatcher keeps heaps of lanes, never scans Tasks.

    python bench/dispatch_decision.py [--sizes 1000,10000,100000] [--takes 20000]

Writes JSON to bench/results/dispatch_decision.json and prints one line.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

from taskmill.dispatch.dispatcher import Candidate, Dispatcher, Limits

TYPES = [f"type{i}" for i in range(8)]
NAMESPACES = [f"ns{i}" for i in range(20)]


def fill(n: int, rng: random.Random) -> Dispatcher:
    dispatcher = Dispatcher()
    dispatcher.set_limits(("ns0", "limited"), Limits(rates=(("type0", 1e9, 1000),)))
    dispatcher.set_limits(("ns1", "limited"), Limits(total=1_000_000))
    for i in range(n):
        namespace = rng.choice(NAMESPACES)
        queue = "limited" if namespace in ("ns0", "ns1") and rng.random() < 0.5 else "default"
        dispatcher.put(
            Candidate(
                key=(namespace, f"task-{i}"),
                queue=queue,
                type=rng.choice(TYPES),
                priority=rng.randint(-2, 2),
                created=float(i),
            ),
            now=0.0,
        )
    return dispatcher


def measure(n: int, takes: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    dispatcher = fill(n, rng)
    samples = []
    clock = time.perf_counter_ns
    for i in range(takes):
        wanted = rng.sample(TYPES, 3)
        start = clock()
        taken = dispatcher.take(wanted, 1, now=1.0 + i * 1e-6)
        elapsed = clock() - start
        for candidate in taken:
            dispatcher.finished(candidate.key)
            # Keep the queue at N: every taken Task is replaced by a new one.
            dispatcher.put(
                Candidate((candidate.key[0], f"r{i}"), candidate.queue, candidate.type, 0, 1e9),
                now=1.0,
            )
        samples.append(elapsed / 1000)
    samples.sort()
    return {
        "pending": n,
        "takes": takes,
        "p50_us": statistics.median(samples),
        "p99_us": samples[int(len(samples) * 0.99)],
        "mean_us": statistics.fmean(samples),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--takes", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("bench/results/dispatch_decision.json"))
    args = parser.parse_args()
    rows = [measure(int(n), args.takes, args.seed) for n in args.sizes.split(",")]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "dispatch_decision", "rows": rows}, indent=2))
    first, last = rows[0], rows[-1]
    parts = [
        f"{r['pending']:,} pending p50 {r['p50_us']:.1f}us p99 {r['p99_us']:.1f}us" for r in rows
    ]
    ratio = last["p50_us"] / first["p50_us"]
    print(
        f"dispatch decision: {', '.join(parts)}; "
        f"p50 ratio {last['pending']:,}/{first['pending']:,} = {ratio:.2f}"
    )


if __name__ == "__main__":
    main()
