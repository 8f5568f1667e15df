"""The task bench-faults runs (a worker loads it with ``-I benchmarks.fault_tasks``)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from shared.queue import TrackedTask, app


@app.task(name="scrape.bench_work", base=TrackedTask, bind=True)
def bench_work(self: TrackedTask, number: int, seconds: float, effects: str) -> int:
    """Works ``seconds``, then records its effect: one line per completed execution, so a task
    whose effect happened twice shows as two lines."""
    time.sleep(seconds)
    with open(Path(effects), "a") as f:
        f.write(f"{number} {os.getpid()}\n")
    return number
