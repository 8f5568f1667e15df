"""Tasks in flight while the worker, or Redis, is killed and restarted: lost, duplicated, failed.

    python -m benchmarks.faults [--tasks 16] [--seconds 1.0]

Runs on a private Redis (redis-server on a free port, append-only file on, as production runs it)
and a fresh PostgreSQL database (BMT_TEST_POSTGRES, as the tests), never the shared servers. Each
scenario submits --tasks tasks of --seconds each to one worker and, part-way, does its fault:
- baseline: nothing (the row to compare against);
- worker SIGKILL: the worker (parent and child) is killed with tasks in flight, a new one starts;
- Redis restart: Redis is shut down with tasks in flight and queued, tasks are submitted while it
  is down (they wait unsent in the jobs table, the outbox), and it starts again.
Lost: jobs not succeeded when the scenario ends; duplicated: tasks whose effect happened more
than once; failed: jobs recorded failed. Also the seconds until every job had succeeded.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import psycopg
import redis

from tools.servers import free_port, start_celery_worker, stop_process_group

POSTGRES_ADMIN = os.environ.get("BMT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
DRAIN_TIMEOUT_S = 120


class PrivateRedis:
    """redis-server on a free port with its own folder; restartable with its data."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.folder),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # Redis flushes the append-only file and exits
            self.process.wait(timeout=30)


def scenario(
    name: str, env: dict, tasks: int, seconds: float, fault: Callable[[list, Callable[[], None]], None]
) -> dict:
    from sqlalchemy import select

    from shared import queue
    from shared.db import session_scope
    from shared.db.models import Job, JobState

    effects = Path(tempfile.mkdtemp(prefix="bmt-faults-")) / "effects.log"
    effects.touch()
    workers = [start_celery_worker(env, "scrape", "benchmarks.fault_tasks")]
    started = time.monotonic()
    ids: list[str] = []

    def submit_next() -> None:
        ids.append(queue.submit("scrape.bench_work", len(ids), seconds, str(effects)))

    for _ in range(tasks // 2):
        submit_next()
    fault(workers, submit_next)
    while len(ids) < tasks:
        submit_next()

    def states() -> Counter:
        with session_scope() as session:
            return Counter(session.scalars(select(Job.state).where(Job.id.in_(ids))).all())

    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while states()[JobState.SUCCEEDED] + states()[JobState.FAILED] < tasks and time.monotonic() < deadline:
        time.sleep(0.5)
    drained = time.monotonic() - started
    final = states()
    with session_scope() as session:
        stuck = [
            f"{name}: job {job.id} {job.state} after {job.attempts} attempts ({job.error or job.message or ''})"
            for job in session.scalars(select(Job).where(Job.id.in_(ids))).all()
            if job.state not in (JobState.SUCCEEDED, JobState.FAILED)
        ]
    for worker in workers:
        stop_process_group(worker, signal.SIGKILL)
    done = Counter(line.split()[0] for line in effects.read_text().splitlines())
    return {
        "scenario": name,
        "tasks": tasks,
        "succeeded": final[JobState.SUCCEEDED],
        "lost": tasks - final[JobState.SUCCEEDED] - final[JobState.FAILED],
        "duplicated": sum(1 for n in done.values() if n > 1),
        "failed": final[JobState.FAILED],
        "seconds": drained if final[JobState.SUCCEEDED] == tasks else None,
        "stuck": stuck,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.faults", description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=1.0, help="work per task")
    parser.add_argument("--only", help="run only the scenario whose name starts with this")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="bmt-faults-redis-"))
    server = PrivateRedis(folder)
    server.start()
    database = f"bmt_faults_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    base = POSTGRES_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    env = {
        "BMT_DATABASE_URL": f"{base}/{database}",
        "BMT_QUEUE_URL": server.url,
        "BMT_BLOB_URL": f"file://{folder / 'blobs'}",
        "BMT_VISIBILITY_TIMEOUT_S": "8",  # redelivery after a kill within seconds, not hours
        "BMT_TASK_TIME_LIMIT_S": "7",
        "BMT_TASK_SOFT_TIME_LIMIT_S": "6",
        "BMT_REDELIVERY_SWEEP_S": "1",
        "BMT_JOB_HEARTBEAT_S": "0.5",
        "BMT_JOB_LOST_AFTER_S": "2",
    }
    os.environ.update(env)
    from shared.db import ensure_schema

    ensure_schema()

    def nothing(workers: list, submit_next: Callable[[], None]) -> None:
        time.sleep(args.seconds)

    def kill_worker(workers: list, submit_next: Callable[[], None]) -> None:
        time.sleep(2 * args.seconds + 3)  # the worker has started and holds a task
        stop_process_group(workers[0], signal.SIGKILL)
        workers.append(start_celery_worker(env, "scrape", "benchmarks.fault_tasks"))

    def restart_redis(workers: list, submit_next: Callable[[], None]) -> None:
        time.sleep(2 * args.seconds + 3)
        server.stop()
        submit_next()  # while Redis is down: kept unsent in the jobs table, sent by a worker's sweep
        server.start()

    rows = []
    try:
        for name, fault in (
            ("baseline", nothing),
            ("worker SIGKILL", kill_worker),
            ("Redis restart", restart_redis),
        ):
            rows.append(scenario(name, env, args.tasks, args.seconds, fault))
    finally:
        server.stop()
        from shared.db import _engine

        _engine.cache_clear()
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    print(
        f"{'scenario':<16} {'tasks':>5} {'succeeded':>9} {'lost':>5} {'duplicated':>10} {'failed':>6} {'seconds':>8}"
    )
    for row in rows:
        seconds = f"{row['seconds']:.1f}" if row["seconds"] is not None else "-"
        print(
            f"{row['scenario']:<16} {row['tasks']:>5} {row['succeeded']:>9} {row['lost']:>5} "
            f"{row['duplicated']:>10} {row['failed']:>6} {seconds:>8}"
        )
    for row in rows:
        print("\n".join(row["stuck"]))
    return 0 if all(r["lost"] == r["duplicated"] == r["failed"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
