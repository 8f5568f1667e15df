"""Animation generation speed: seconds per action on this machine's CPU (or a GPU when present).

    python -m benchmarks.animation [--checkpoint models/animation/tiny/model.pt] [--repeats 3]

Requests through AnimationGenerator.run_many, as the gateway and Triton make them: a humanoid
rig of 21 bones (walk), a 45-bone rig (the largest of the corpus's test packs), and a mesh
(spin); each one at a time, then all of them side by side. The first call (the text encoder's
and torch's first-use costs) is not timed. Target: at most 1 s an action.

Baselines measured in the same run, per request: the model's own steps (a KV-cached step and the
output head per token, as decoding runs them, on inputs made beforehand), so "the rest" (sampling,
the grammar, input lookups, parsing the request, building the action) shows as a share whatever
the machine's load; and one teacher-forced pass over the walk's whole sequence (the same
arithmetic in one call: what running it a token at a time costs). Also reports the load average:
on a machine that others share, the times say as much about them as about the model (the CPU
time, this process's own, shows their load less, though cores that share caches still slow it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

from benchmarks.generate import device_name
from shared.ml.animation_generator import AnimationGenerator
from shared.ml.animation_model import AnimationModel, Decoding, Target, batch_inputs
from shared.ml.animation_tokens import KEYS, Motion, MotionLayout
from shared.ml.text_embedding import embed


def chain_rig(count: int) -> dict:
    """A rig of ``count`` bones: hips and a spine up to the head, then arms off the chest and legs
    off the hips, three bones each, left and right in turn (more pairs past the first four)."""
    bones = [{"name": "Hips", "head": [0, 0, 1.0], "tail": [0, 0, 1.2]}]
    for i, name in enumerate(("Spine", "Chest", "Neck", "Head")):
        bones.append(
            {
                "name": name,
                "parent": bones[-1]["name"],
                "head": [0, 0, 1.2 + 0.2 * i],
                "tail": [0, 0, 1.4 + 0.2 * i],
            }
        )
    limb = 0
    while len(bones) < count:
        side, sign = ("L", 1) if limb % 2 == 0 else ("R", -1)
        arm = (limb // 2) % 2 == 0
        parent, z = ("Chest", 1.5) if arm else ("Hips", 1.0)
        for k, part in enumerate(("Upper", "Lower", "End")):
            name = f"{part}{'Arm' if arm else 'Leg'}{limb // 4 or ''}.{side}"
            if arm:
                head, tail = [sign * (0.2 + 0.3 * k), 0, z], [sign * (0.5 + 0.3 * k), 0, z]
            else:
                head, tail = [sign * 0.15, 0, z - 0.33 * k], [sign * 0.15, 0, z - 0.33 * (k + 1)]
            if len(bones) < count:
                bones.append({"name": name, "parent": parent, "head": head, "tail": tail})
            parent = name
        limb += 1
    return {"name": f"Rig{count}", "bones": bones}


def sequence(layout: MotionLayout) -> list[int]:
    """A whole motion's tokens for the layout (a still pose): the baselines' inputs."""
    return layout.encode(Motion(True, 24.0, np.zeros((KEYS, len(layout.channels)))))


@torch.inference_mode()
def model_steps_seconds(model: AnimationModel, text: torch.Tensor, tokens: list[int]) -> float:
    """Seconds of the model's own steps for ``tokens``: a prefill, then a KV-cached step and the
    output head per token, as decoding runs them (AnimationModel.generate_batch's Decoding), on
    inputs made beforehand."""
    c = model.config
    inputs = model.tok_emb(torch.tensor(tokens))[:, None, None]  # (T, 1, 1, d)
    head = model.head.weight.t().contiguous()
    start = time.perf_counter()
    decoding = Decoding(model, 1, c.prefix_tokens + len(tokens))
    torch.mm(decoding(torch.cat([model._prefix(text[None]), inputs[0]], 1)), head)
    for x in inputs[1:-1]:
        torch.mm(decoding(x), head)
    return time.perf_counter() - start


@torch.inference_mode()
def teacher_forced_seconds(model: AnimationModel, text: torch.Tensor, layout: MotionLayout) -> float:
    """Seconds of one forward pass over the layout's whole sequence (logits at every position)."""
    inputs = batch_inputs([Target.of(layout)], [sequence(layout)])[:-1]
    start = time.perf_counter()
    model(text[None], *inputs)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.animation")
    parser.add_argument("--checkpoint", default="models/animation/tiny/model.pt")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = AnimationGenerator(args.checkpoint)
    model = generator.model
    requests: dict[str, dict] = {
        "humanoid walk (21 bones)": {
            "prompt": "walk cycle",
            "object_type": "ARMATURE",
            "armature": chain_rig(21),
        },
        "large rig idle (45 bones)": {"prompt": "idle", "object_type": "ARMATURE", "armature": chain_rig(45)},
        "mesh spin": {"prompt": "slow spin", "object_type": "MESH"},
    }
    generator.run_many([requests["mesh spin"]])  # first use: the text encoder loads
    print(f"device: {device_name(model.pos_emb.weight.device)}")
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(
        f"{'':28s} {'s/action':>8s} {'cpu s':>6s} {'tokens':>6s} {'tokens/s':>8s} {'model steps s':>13s} "
        f"{'the rest':>9s}"
    )
    for name, request in requests.items():
        times, cpu, steps = [], [], []
        text = torch.from_numpy(embed([request["prompt"]])[0])
        tokens = sequence(MotionLayout(request.get("armature")))
        for seed in range(args.repeats):  # generation and its baseline in turn: the same load
            start, process = time.perf_counter(), time.process_time()
            result = generator.run_many([{**request, "seed": seed}])[0]
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - process)  # this process's CPU time: others' load shows less
            steps.append(model_steps_seconds(model, text, tokens))
        median, step = statistics.median(times), statistics.median(steps)
        count = result["tokens"]
        print(
            f"{name:28s} {median:8.2f} {statistics.median(cpu):6.2f} {count:6d} {count / median:8.0f} {step:13.2f} "
            f"{(median - step) / median:9.0%}"
        )
    walk = requests["humanoid walk (21 bones)"]
    text = torch.from_numpy(embed([walk["prompt"]])[0])
    forced = statistics.median(
        teacher_forced_seconds(model, text, MotionLayout(walk["armature"])) for _ in range(args.repeats)
    )
    print(f"{'walk, one teacher-forced pass':28s} {forced:8.2f}  (the same arithmetic in one call)")
    start = time.perf_counter()
    batch = generator.run_many([{**r, "seed": 0} for r in requests.values()])
    seconds = time.perf_counter() - start
    print(f"{'all three side by side':28s} {seconds / len(batch):8.2f} s/action")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
