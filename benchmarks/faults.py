"""Tasks and generations in flight while a part is killed or restarted: lost, duplicated, failed.

    python -m benchmarks.faults [--tasks 16] [--seconds 1.0] [--generations 8] [--faces 40] [--only NAME]

Runs on a private Redis (redis-server on a free port, append-only file on, as production runs it)
and a fresh PostgreSQL database (BMT_TEST_POSTGRES, as the tests), never the shared servers.

Tasks: each scenario submits --tasks tasks of --seconds each to one worker and, part-way, does its
fault:
- baseline: nothing (the row to compare against);
- worker SIGKILL: the worker (parent and child) is killed with tasks in flight, a new one starts;
- Redis restart: Redis is shut down with tasks in flight and queued, tasks are submitted while it
  is down (they wait unsent in the jobs table, the outbox), and it starts again.
Lost: jobs not succeeded when the scenario ends; duplicated: tasks whose effect happened more
than once; failed: jobs recorded failed. Seconds: until every job had succeeded.

Generations: --generations geometry-only requests (--faces faces each) to the real gateway process
in front of the bundled Triton (the committed geometry checkpoint). Each request has a prompt of
its own, which names its rows in the generations table; a request refused with 503 + Retry-After is
sent again, after Retry-After, once the part is back.
- Triton SIGKILL: tritonserver and its model stubs are killed with generations running, requests
  go on arriving while it is down, and it starts again on the same ports;
- S3 restart: the S3 server (moto, standing in for MinIO) stops with generations running, a second
  gateway replica (nothing in its memory) reads finished results while it is down (must be 503,
  not 500) and after (200), and it starts again on the same port. Moto's store lives in this
  process, not in its server thread, so the bucket and blobs outlive the restart, as MinIO's disk;
- gateway SIGKILL: a gateway is killed with generations queued and running, a second one starts on
  the same database (BMT_GENERATION_LEASE_S=2): every generation of the dead one must end failed by
  the lease sweep, and new requests to the second one succeed.
Succeeded, failed (ended failed, with its reason), refused (503 answers), lost (accepted and not
ended within GENERATION_TIMEOUT_S, or never accepted), hung (a request not answered within
HTTP_TIMEOUT_S), duplicated (a request with more than one row). Seconds: until the gateway
accepted a request again once the part was back (Triton ready, S3 started again), or, for the
gateway, from the kill until every generation of the dead one had ended.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg
import redis

from services.serving.triton import TritonServer, start_triton, write_model_repository
from tools.servers import (
    free_port,
    kill_process_tree,
    start_celery_worker,
    start_gateway,
    start_s3_server,
    stop_gateway,
    stop_process_group,
)

POSTGRES_ADMIN = os.environ.get("BMT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
DRAIN_TIMEOUT_S = 120
GENERATION_TIMEOUT_S = 300  # a generation not ended by then is lost
HTTP_TIMEOUT_S = 30  # a request not answered by then is hung
RESEND_WITHIN_S = 120  # how long refused requests are sent again once the part is back
INFERENCE_TIMEOUT_S = 240  # a model call's deadline (a 2-core machine shared with trainings decodes slowly)
BEGAN = time.monotonic()


def progress(text: str) -> None:
    print(f"[{time.monotonic() - BEGAN:6.1f} s] {text}", file=sys.stderr, flush=True)


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
    name: str,
    env: dict,
    tasks: int,
    seconds: float,
    fault: Callable[[list, Callable[[], None]], None],
    folder: Path,
) -> dict:
    from sqlalchemy import select

    from shared import queue
    from shared.db import session_scope
    from shared.db.models import Job, JobState

    effects = Path(tempfile.mkdtemp(prefix="effects-", dir=folder)) / "effects.log"
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
        "sent": tasks,
        "succeeded": final[JobState.SUCCEEDED],
        "failed": final[JobState.FAILED],
        "refused": None,
        "lost": tasks - final[JobState.SUCCEEDED] - final[JobState.FAILED],
        "hung": None,
        "duplicated": sum(1 for n in done.values() if n > 1),
        "seconds": drained if final[JobState.SUCCEEDED] == tasks else None,
        "notes": [],
        "problems": stuck,
        "passed": final[JobState.SUCCEEDED] == tasks and not any(n > 1 for n in done.values()),
    }


class GenerationClient:
    """The bench's client of a gateway. A request keeps its body (and so its prompt) when sent
    again; a 503 with Retry-After is a refusal, and the request waits to be sent again."""

    def __init__(self, url: str, tag: str, faces: int) -> None:
        self.http = httpx.Client(base_url=url, timeout=HTTP_TIMEOUT_S)
        self.tag, self.faces = tag, faces
        self.bodies: dict[str, dict] = {}  # prompt -> body, every request made
        self.accepted: dict[str, str] = {}  # prompt -> generation id
        self.waiting: list[str] = []  # refused, to send again
        self.refused = self.hung = 0
        self.retry_after_s = 1.0
        self.problems: list[str] = []

    def new(self) -> bool:
        k = len(self.bodies)
        prompt = f"a chair {self.tag} {k}"
        self.bodies[prompt] = {
            "prompt": prompt,
            "face_budget": self.faces,
            "seed": k,
            "specialists": ["geometry"],
        }
        return self.send(prompt)

    def send(self, prompt: str) -> bool:
        """POST the request once; whether it was accepted."""
        try:
            response = self.http.post("/v1/generations", json=self.bodies[prompt])
        except httpx.TimeoutException:
            self.hung += 1
            self.waiting.append(prompt)
            return False
        if response.status_code == 202:
            self.accepted[prompt] = response.json()["id"]
            return True
        if response.status_code == 503 and response.headers.get("retry-after"):
            self.refused += 1
            self.retry_after_s = float(response.headers["retry-after"])
            self.waiting.append(prompt)
            return False
        self.problems.append(f"POST {prompt!r}: {response.status_code} {response.text[:300]}")
        return False

    def send_refused_again(self) -> float | None:
        """Send the refused requests again, each after Retry-After, until all are accepted (a new
        one when none waits, to see the gateway accept again); the seconds until the first was."""
        start = time.monotonic()
        first = None
        if not self.waiting:
            first = 0.0 if self.new() else None
        while self.waiting and time.monotonic() - start < RESEND_WITHIN_S:
            if self.send(self.waiting.pop(0)):
                first = time.monotonic() - start if first is None else first
            else:
                time.sleep(self.retry_after_s)
        return first


def generation_rows(prompts: list[str]) -> dict[str, list[tuple[str, str | None, float | None]]]:
    """Per prompt, the (status, error, latency in ms) of each of its rows in the generations table."""
    from sqlalchemy import select

    from shared.db import session_scope
    from shared.db.models import Generation

    rows: dict[str, list[tuple[str, str | None, float | None]]] = {prompt: [] for prompt in prompts}
    with session_scope() as session:
        for prompt, status, error, latency_ms in session.execute(
            select(Generation.prompt, Generation.status, Generation.error, Generation.latency_ms).where(
                Generation.prompt.in_(prompts)
            )
        ):
            rows[prompt].append((status.value, error, latency_ms))
    return rows


ENDED = ("succeeded", "failed", "cancelled")


def wait_ended(prompts: list[str], timeout_s: float = GENERATION_TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(rows and all(row[0] in ENDED for row in rows) for rows in generation_rows(prompts).values()):
            return True
        time.sleep(0.25)
    return False


def wait_running(client: GenerationClient, timeout_s: float = 60) -> None:
    """Until one of the client's generations runs (its stage holds the model), so a fault hits work."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(
            row[0] == "running" for rows in generation_rows(list(client.accepted)).values() for row in rows
        ):
            return
        time.sleep(0.1)


def generation_row(name: str, client: GenerationClient, seconds: float | None, notes: list[str]) -> dict:
    progress(f"{name}: waiting for {len(client.accepted)} generations to end")
    wait_ended(list(client.accepted))
    progress(f"{name}: done")
    rows = generation_rows(list(client.bodies))
    ended = [rows[p][0] for p in client.accepted if len(rows[p]) == 1 and rows[p][0][0] in ENDED]
    problems = list(client.problems)
    problems += [f"{name}: {p!r} never accepted" for p in client.bodies if p not in client.accepted]
    problems += [f"{name}: {p!r} has {len(r)} rows" for p, r in rows.items() if len(r) > 1]
    problems += [
        f"{name}: {p!r} not ended: {r}"
        for p, r in rows.items()
        if p in client.accepted and r and r[0][0] not in ENDED
    ]
    failed = [error for status, error, _ in ended if status == "failed"]
    problems += [f"{name}: a generation failed without a reason" for error in failed if not error]
    reasons = Counter((error or "")[:110] for error in failed)
    took = sorted(latency_ms / 1000 for status, _, latency_ms in ended if status == "succeeded")
    notes = (
        [*notes, f"a succeeded generation took {took[len(took) // 2]:.1f} s (median, from accepted)"]
        if took
        else notes
    )
    notes += [f"failed {n}x: {reason}" for reason, n in reasons.most_common()]
    lost = len(client.bodies) - len(ended)
    duplicated = sum(1 for r in rows.values() if len(r) > 1)
    return {
        "scenario": name,
        "sent": len(client.bodies),
        "succeeded": len(took),
        "failed": len(failed),
        "refused": client.refused,
        "lost": lost,
        "hung": client.hung,
        "duplicated": duplicated,
        "seconds": seconds,
        "notes": notes,
        "problems": problems,
        "passed": lost == duplicated == client.hung == 0 and not problems,
    }


class RestartableTriton:
    """The bundled Triton serving the geometry checkpoint, on ports that stay the same across restarts."""

    def __init__(self, folder: Path, checkpoint: Path) -> None:
        self.folder = folder
        # Queued requests wait as long as the gateway's deadline: on a loaded machine a failure
        # is then the fault's, not Triton's queue timeout.
        self.models = write_model_repository(
            folder / "models", {"geometry": checkpoint}, max_batch=16, queue_timeout_s=INFERENCE_TIMEOUT_S
        )
        self.ports = (free_port(), free_port(), free_port())
        self.server: TritonServer | None = None

    @property
    def url(self) -> str:
        return f"grpc://127.0.0.1:{self.ports[1]}"

    def start(self) -> None:
        http, grpc, metrics = self.ports
        self.server = start_triton(
            self.folder / "models", self.folder, self.models, http, grpc, metrics, self.folder / "triton.log"
        )
        self.server.wait_ready("geometry", timeout=300)

    def kill(self) -> None:
        """SIGKILL it and its model stubs; then remove the shared-memory regions they mapped (a
        dying container takes its /dev/shm with it; here they would stay until a reboot)."""
        assert self.server is not None
        maps = Path(f"/proc/{self.server.process.pid}/maps").read_text().splitlines()
        regions = {line.split()[5] for line in maps if "/dev/shm/triton_python_backend" in line}
        kill_process_tree(self.server.process)
        for region in regions:
            Path(region).unlink(missing_ok=True)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


def triton_sigkill(triton: RestartableTriton, env: dict, generations: int, faces: int) -> dict:
    process, url = start_gateway(env)
    client = GenerationClient(url, "triton", faces)
    try:
        for _ in range(generations // 2):
            client.new()
        wait_running(client)
        progress("Triton SIGKILL: killing Triton")
        killed = time.monotonic()
        triton.kill()
        for _ in range(generations - generations // 2):  # while it is down
            client.new()
            time.sleep(0.5)
        triton.start()
        down_s = time.monotonic() - killed
        progress(f"Triton SIGKILL: Triton ready again after {down_s:.1f} s")
        back = client.send_refused_again()
        return generation_row(
            "Triton SIGKILL",
            client,
            back,
            [f"Triton down {down_s:.1f} s (killed, started again, model loaded)"],
        )
    finally:
        stop_gateway(process)


def s3_restart(env: dict, generations: int, faces: int) -> dict:
    s3, endpoint = start_s3_server()
    blob_url = f"s3://bench:bench@{endpoint}/faults"
    env = {**env, "BMT_BLOB_URL": blob_url}
    writer, writer_url = start_gateway(env)
    reader, reader_url = start_gateway(env)  # a second replica: nothing of the results in its memory
    client = GenerationClient(writer_url, "s3", faces)
    try:
        earlier = 2
        for _ in range(earlier):
            client.new()
        wait_ended(list(client.accepted))
        rows = generation_rows(list(client.accepted))
        finished = [gid for prompt, gid in client.accepted.items() if rows[prompt][0][0] == "succeeded"]
        for _ in range(generations // 2 - earlier):
            client.new()
        wait_running(client)
        progress("S3 restart: stopping S3")
        s3.stop()
        stopped = time.monotonic()
        reads_down, read_s = Counter(), []
        with httpx.Client(base_url=reader_url, timeout=HTTP_TIMEOUT_S) as replica:
            for gid in finished:
                start = time.monotonic()
                try:
                    reads_down[replica.get(f"/v1/generations/{gid}").status_code] += 1
                except httpx.TimeoutException:
                    reads_down["hung"] += 1
                read_s.append(time.monotonic() - start)
            for _ in range(generations - generations // 2):  # while it is down
                client.new()
                time.sleep(0.5)
            time.sleep(max(0.0, 8 - (time.monotonic() - stopped)))  # in-flight ones reach their store step
            s3, _ = start_s3_server(int(endpoint.rsplit(":", 1)[1]))
            down_s = time.monotonic() - stopped
            progress(f"S3 restart: S3 started again after {down_s:.1f} s")
            back = client.send_refused_again()
            wait_ended(list(client.accepted))
            reads_after = Counter(replica.get(f"/v1/generations/{gid}").status_code for gid in finished)
        row = generation_row(
            "S3 restart",
            client,
            back,
            [
                f"S3 down {down_s:.1f} s",
                f"a finished result read from the other replica while S3 was down: {dict(reads_down)} "
                f"(status: count), in {max(read_s, default=0):.1f} s at most; after the restart: {dict(reads_after)}",
            ],
        )
        if set(reads_down) != {503} or set(reads_after) != {200}:
            row["problems"].append(
                f"S3 restart: a finished result read while S3 was down answered {dict(reads_down)} "
                f"(not 503), after the restart {dict(reads_after)} (not 200)"
            )
            row["passed"] = False
        return row
    finally:
        stop_gateway(writer)
        stop_gateway(reader)
        s3.stop()


def gateway_sigkill(env: dict, generations: int, faces: int) -> dict:
    env = {**env, "BMT_GENERATION_LEASE_S": "2", "BMT_GENERATION_CONCURRENCY": "2"}
    dead, dead_url = start_gateway(env)
    client = GenerationClient(dead_url, "gateway", faces)
    for _ in range(generations):
        client.new()
    wait_running(client)
    progress("gateway SIGKILL: killing a gateway")
    dead.kill()
    dead.wait()
    killed = time.monotonic()
    process, url = start_gateway(env)  # the one that stays, on the same database
    second_s = time.monotonic() - killed
    try:
        left = list(client.accepted)
        swept = time.monotonic() - killed if wait_ended(left, timeout_s=60) else None
        progress(f"gateway SIGKILL: the killed gateway's generations ended: {swept is not None}")
        client.http.close()
        client.http = httpx.Client(base_url=url, timeout=HTTP_TIMEOUT_S)
        for _ in range(generations // 2):  # the surviving replica takes new work
            client.new()
        by_dead = Counter(rows[0][0] for rows in generation_rows(left).values() if rows)
        row = generation_row(
            "gateway SIGKILL",
            client,
            swept,
            [
                f"the killed gateway's {len(left)} generations: {dict(by_dead)}; the second gateway "
                f"answered {second_s:.1f} s after the kill (its start-up sweep fails what the dead one held)"
            ],
        )
        if by_dead["queued"] or by_dead["running"]:
            row["passed"] = False
        return row
    finally:
        stop_gateway(process)


SCENARIOS = ("baseline", "worker SIGKILL", "Redis restart", "Triton SIGKILL", "S3 restart", "gateway SIGKILL")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.faults", description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=1.0, help="work per task")
    parser.add_argument("--generations", type=int, default=8, help="requests per generation scenario")
    parser.add_argument("--faces", type=int, default=40, help="face budget of a generation")
    parser.add_argument("--checkpoint", type=Path, default=Path("models/geometry/tiny/model.pt"))
    parser.add_argument("--only", help="run only the scenarios whose name starts with this")
    args = parser.parse_args(argv)
    chosen = [name for name in SCENARIOS if not args.only or name.lower().startswith(args.only.lower())]
    folder = Path(tempfile.mkdtemp(prefix="bmt-faults-"))
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

    task_faults = {"baseline": nothing, "worker SIGKILL": kill_worker, "Redis restart": restart_redis}
    triton = None
    rows = []
    try:
        for name in chosen:
            progress(name)
            if name in task_faults:
                rows.append(scenario(name, env, args.tasks, args.seconds, task_faults[name], folder))
                continue
            if triton is None:
                triton = RestartableTriton(folder / "triton", args.checkpoint)
                triton.start()
                progress("Triton ready")
            gateway_env = {
                "BMT_DATA_DIR": str(folder / "var"),
                "BMT_INFERENCE_URL": triton.url,
                "BMT_GEOMETRY_CHECKPOINT": str(args.checkpoint),
                "BMT_INFERENCE_TIMEOUT_S": str(INFERENCE_TIMEOUT_S),
                "BMT_LOG_LEVEL": "WARNING",
            }
            if name == "Triton SIGKILL":
                rows.append(triton_sigkill(triton, gateway_env, args.generations, args.faces))
            elif name == "S3 restart":
                rows.append(s3_restart(gateway_env, args.generations, args.faces))
            else:
                rows.append(gateway_sigkill(gateway_env, args.generations, args.faces))
    finally:
        if triton is not None:
            triton.stop()
        server.stop()
        from shared.db import _engine

        _engine.cache_clear()
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        shutil.rmtree(folder, ignore_errors=True)
    columns = ("sent", "succeeded", "failed", "refused", "lost", "hung", "duplicated")
    print(f"{'scenario':<16} " + " ".join(f"{c:>{max(5, len(c))}}" for c in columns) + f" {'seconds':>8}")
    for row in rows:
        cells = " ".join(f"{'-' if row[c] is None else row[c]:>{max(5, len(c))}}" for c in columns)
        seconds = f"{row['seconds']:.1f}" if row["seconds"] is not None else "-"
        print(f"{row['scenario']:<16} {cells} {seconds:>8}")
    print(
        "seconds: tasks, until every one had succeeded; Triton and S3, until the gateway accepted a "
        "request again once the part was back; gateway, from the kill until the dead one's generations ended"
    )
    for row in rows:
        for note in row["notes"]:
            print(f"{row['scenario']}: {note}")
    for row in rows:
        if row["problems"]:
            print("\n".join(row["problems"]))
    return 0 if all(row["passed"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
