"""``make demo``: the whole job end to end on the embedded default (SQLite, a local blob folder,
in-process tasks, in-process torch), on ../shared/corpus:

1. ingest every corpus file with its license and provenance (the scraper's local source),
   extract a sample in headless Blender, label, filter and deduplicate it, build the four datasets;
2. train the geometry model briefly on the geometry dataset just built (the ``tiny`` preset);
3. start the gateway and ask it, as the Blender add-on does, for six scenes from six prompts
   through every specialist that exists;
4. build each scene in Blender as the add-on's Insert does (UV maps included), render it with its
   materials (Cycles, 512 px) and save it as a .blend; one contact sheet of the six renders and a
   summary table (faces, materials, modifiers, actions, seconds per stage).

Generation uses the committed checkpoints (models/NAME/tiny), which trained far longer than the
demo can; the demo's own short run shows the training stage works on fresh data. Everything is
written under var/demo/. ``--scenes-only`` runs steps 3 and 4 alone.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn

from services.labeler.__main__ import main as labeler_main
from shared.db import ensure_schema
from shared.inference import DEFAULT_FACE_BUDGET
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


PROMPTS = (
    "a wooden chair",
    "a round table",
    "a sword",
    "a barrel",
    "a lamp post",
    "a bookshelf",
)
# The gateway's name for each specialist -> its committed checkpoint, when the gateway cannot say.
SPECIALIST_CHECKPOINTS = {
    "geometry": "models/geometry/parts-nearest/model.pt",
    "materials": "models/material/tiny/model.pt",
    "modifiers": "models/modifier/tiny/model.pt",
    "animation": "models/animation/tiny/model.pt",
}


def available_specialists() -> list[str]:
    """Every specialist the gateway can run: shared.inference's own answer where it exists, else
    the committed checkpoints (geometry's is the one BMT_GEOMETRY_CHECKPOINT names)."""
    if importlib.util.find_spec("shared.inference") is not None:
        inference = importlib.import_module("shared.inference")
        if hasattr(inference, "available_specialists"):
            return list(inference.available_specialists())
    found = {name: REPO / path for name, path in SPECIALIST_CHECKPOINTS.items()}
    found["geometry"] = Path(get_settings().geometry_checkpoint)
    return [name for name, path in found.items() if path.is_file()]


@contextmanager
def gateway():
    """The gateway in this process (uvicorn on a port the system picks); yields its base URL."""
    from services.gateway.app import create_app

    ensure_schema()  # as python -m services.gateway does before serving
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the gateway did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def generate(base: str, request: dict) -> tuple[dict, dict[str, float]]:
    """POST a generation and poll it as the add-on does; the first scene and seconds per stage
    (the gateway's own stage times when it reports them, else the whole generation)."""
    start = time.perf_counter()
    reply = httpx.post(f"{base}/v1/generations", json=request, timeout=30)
    if reply.status_code >= 400:
        raise RuntimeError(f"the gateway refused {request['prompt']!r}: {reply.text}")
    generation_id = reply.json()["id"]
    while True:
        state = httpx.get(f"{base}/v1/generations/{generation_id}", timeout=30).json()
        if state["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.2)
    if state["status"] != "succeeded" or not state.get("scenes"):
        raise RuntimeError(f"generation {state['status']}: {state.get('error') or state.get('message')}")
    stages = {
        stage["name"]: float(stage["seconds"])
        for stage in state.get("stages") or []
        if isinstance(stage, dict) and isinstance(stage.get("seconds"), int | float)
    }
    return state["scenes"][0], stages or {"generation": time.perf_counter() - start}


def scene_counts(scene: dict) -> dict[str, int]:
    objects = scene.get("objects", [])
    return {
        "objects": len(objects),
        "faces": sum(len((o.get("mesh") or {}).get("faces", [])) for o in objects),
        "materials": len(scene.get("materials", [])),
        "modifiers": sum(len(o.get("modifiers", [])) for o in objects),
        "actions": len(scene.get("actions", [])),
    }


def make_scenes(
    out: Path,
    prompts: tuple[str, ...] = PROMPTS,
    *,
    face_budget: int = DEFAULT_FACE_BUDGET,
    seed: int = 1,
    size: int = 512,
    samples: int = 16,
) -> list[dict]:
    """Steps 3 and 4: one .json, .png and .blend per prompt, contact_sheet.png and summary.json."""
    out.mkdir(parents=True, exist_ok=True)
    specialists = available_specialists()
    print(f"specialists: {', '.join(specialists)}")
    rows = []
    with gateway() as base:
        for n, prompt in enumerate(prompts):
            request = {
                "prompt": prompt,
                "specialists": specialists,
                "face_budget": face_budget,
                "seed": seed + n,
                "variations": 1,
            }
            scene, seconds = generate(base, request)
            stem = out / f"{n + 1}-{'-'.join(prompt.split())}"
            stem.with_suffix(".json").write_text(json.dumps(scene))
            rows.append({"prompt": prompt, "stem": str(stem), **scene_counts(scene), "seconds": seconds})
    for row in rows:
        stem = Path(row["stem"])
        start = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "blender_worker.render_scene",
                str(stem.with_suffix(".json")),
                str(stem.with_suffix(".png")),
                *("--size", str(size), "--samples", str(samples)),
                *("--blend", str(stem.with_suffix(".blend")), "--uv-maps"),
            ],
            check=True,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
        )
        row["seconds"]["render"] = time.perf_counter() - start
    contact_sheet(rows, out / "contact_sheet.png")
    (out / "summary.json").write_text(json.dumps({"specialists": specialists, "scenes": rows}, indent=1))
    print_table(rows)
    return rows


def contact_sheet(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(3, len(rows))
    lines = (len(rows) + columns - 1) // columns
    figure, axes = plt.subplots(lines, columns, figsize=(4 * columns, 4.4 * lines), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, row in zip(axes.flat, rows, strict=False):
        ax.imshow(plt.imread(Path(row["stem"]).with_suffix(".png")))
        ax.set_title(
            f"{row['prompt']}\n{row['faces']} faces, {row['materials']} materials, "
            f"{row['modifiers']} modifiers, {row['actions']} actions",
            fontsize=9,
        )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def print_table(rows: list[dict]) -> None:
    stages = list(dict.fromkeys(name for row in rows for name in row["seconds"]))
    header = f"{'prompt':18} {'faces':>6} {'materials':>9} {'modifiers':>9} {'actions':>7}"
    header += "".join(f" {name + ' s':>12}" for name in stages)
    print(header)
    for row in rows:
        line = f"{row['prompt']:18} {row['faces']:6d} {row['materials']:9d} {row['modifiers']:9d} {row['actions']:7d}"
        line += "".join(f" {row['seconds'].get(name, 0.0):12.1f}" for name in stages)
        print(line)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--per-pack", type=int, default=2, help="corpus files extracted from each pack folder"
    )
    parser.add_argument("--train-minutes", type=float, default=2.0)
    parser.add_argument("--face-budget", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--size", type=int, default=512, help="render size in pixels")
    parser.add_argument("--samples", type=int, default=16, help="Cycles samples per pixel")
    parser.add_argument("--scenes-only", action="store_true", help="steps 3 and 4 only")
    args = parser.parse_args(argv)
    settings = get_settings()
    out = settings.data_dir / "demo"
    out.mkdir(parents=True, exist_ok=True)
    print(f"embedded run in {settings.data_dir.resolve()} (metadata {settings.database_url})")
    ensure_schema()
    started = time.perf_counter()

    if not args.scenes_only:
        banner("1. ingest, extract, label, filter, deduplicate, build datasets")
        labeler_main(["run", "--per-pack", str(args.per_pack), "--formats", "blend", "--name", "demo"])
        manifest_key = dataset_by_name("demo")

        banner(
            f"2. train the geometry model for {args.train_minutes:g} minutes on dataset {manifest_key[:12]}"
        )
        result = train_briefly(manifest_key, out / "geometry-run", args.train_minutes)
        print(json.dumps(result, indent=2))

    banner(f"3-4. {len(PROMPTS)} scenes through the gateway, built, rendered and saved in Blender")
    make_scenes(
        out / "scenes", face_budget=args.face_budget, seed=args.seed, size=args.size, samples=args.samples
    )
    sheet = (out / "scenes" / "contact_sheet.png").resolve()
    print(f"\ndemo finished in {time.perf_counter() - started:.0f} s; look at {sheet}")


if __name__ == "__main__":
    main()
