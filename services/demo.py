"""``make demo``: the whole job end to end on the embedded default (SQLite, a local blob folder,
in-process tasks, in-process torch), on ../shared/corpus:

1. ingest every corpus file with its license and provenance (the scraper's local source),
   extract a sample in headless Blender, label, filter and deduplicate it, build the four datasets;
2. train the geometry model briefly on the geometry dataset just built (the ``tiny`` preset);
3. start the gateway and ask it for a mesh from a prompt, as the Blender add-on does;
4. inject the returned scene into Blender and render it to a PNG.

Generation uses the committed checkpoint (models/geometry/tiny), which trained far longer than
the demo can; the demo's own short run shows the training stage works on fresh data.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import uvicorn

from services.labeler.__main__ import main as labeler_main
from shared.db import ensure_schema
from shared.ml.datasets import dataset_by_name
from shared.settings import get_settings

REPO = Path(__file__).resolve().parents[1]


def banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def train_briefly(manifest_key: str, run_dir: Path, minutes: float) -> dict:
    from services.trainer.geometry import TrainConfig, train

    record = train(
        TrainConfig(
            preset="tiny",
            dataset=manifest_key,
            run_dir=str(run_dir),
            max_minutes=minutes,
            checkpoint_every=10**9,
        )
    )
    return record["result"]


def generate_through_gateway(prompt: str, face_budget: int, seed: int) -> tuple[dict, float]:
    """Start the gateway in this process (uvicorn on a free port) and call it over HTTP."""
    from services.gateway.app import create_app

    # Port 0: the system picks a free one, read back from the listening socket once started.
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        base = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
        start = time.perf_counter()
        reply = httpx.post(
            f"{base}/v1/generations",
            json={"prompt": prompt, "face_budget": face_budget, "seed": seed},
            timeout=10,
        )
        reply.raise_for_status()
        generation_id = reply.json()["id"]
        while True:
            state = httpx.get(f"{base}/v1/generations/{generation_id}", timeout=10).json()
            if state["status"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.2)
        if state["status"] != "succeeded":
            raise RuntimeError(f"generation {state['status']}: {state['error']}")
        return state["scenes"][0], time.perf_counter() - start
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--per-pack", type=int, default=2, help="corpus files extracted from each pack folder"
    )
    parser.add_argument("--train-minutes", type=float, default=2.0)
    parser.add_argument("--prompt", default="a wooden chair")
    parser.add_argument("--face-budget", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    settings = get_settings()
    out = settings.data_dir / "demo"
    out.mkdir(parents=True, exist_ok=True)
    print(f"embedded run in {settings.data_dir.resolve()} (metadata {settings.database_url})")
    ensure_schema()
    started = time.perf_counter()

    banner("1. ingest, extract, label, filter, deduplicate, build datasets")
    labeler_main(["run", "--per-pack", str(args.per_pack), "--formats", "blend", "--name", "demo"])
    manifest_key = dataset_by_name("demo")

    banner(f"2. train the geometry model for {args.train_minutes:g} minutes on dataset {manifest_key[:12]}")
    result = train_briefly(manifest_key, out / "geometry-run", args.train_minutes)
    print(json.dumps(result, indent=2))

    banner(f"3. generate {args.prompt!r} through the gateway (checkpoint {settings.geometry_checkpoint})")
    scene, seconds = generate_through_gateway(args.prompt, args.face_budget, args.seed)
    mesh = scene["objects"][0]["mesh"]
    scene_file = out / "generated.json"
    scene_file.write_text(json.dumps(scene))
    print(f"{len(mesh['faces'])} faces, {len(mesh['vertices'])} vertices in {seconds:.1f} s -> {scene_file}")

    banner("4. inject the scene into Blender and render it")
    png = out / "generated.png"
    subprocess.run(
        [sys.executable, "-m", "blender_worker.render_scene", str(scene_file), str(png)], check=True, cwd=REPO
    )
    print(f"\ndemo finished in {time.perf_counter() - started:.0f} s; look at {png.resolve()}")


if __name__ == "__main__":
    main()
