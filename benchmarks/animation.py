"""Animation generation speed: seconds per action on this machine's CPU (or a GPU when present).

    python -m benchmarks.animation [--checkpoint models/animation/tiny/model.pt] [--repeats 3]

Requests through AnimationGenerator.run_many, as the gateway and Triton make them: a humanoid
rig of 21 bones (walk), a 45-bone rig (the largest of the corpus's test packs), and a mesh
(spin); each one at a time, then all of them side by side. The first call (the text encoder's
and torch's first-use costs) is not timed. Also reports the load average: on a machine that
others share, the times say as much about them as about the model. Target: at most 1 s an action.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from benchmarks.generate import device_name
from shared.ml.animation_generator import AnimationGenerator


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


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.animation")
    parser.add_argument("--checkpoint", default="models/animation/tiny/model.pt")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = AnimationGenerator(args.checkpoint)
    requests = {
        "humanoid walk (21 bones)": {
            "prompt": "walk cycle",
            "object_type": "ARMATURE",
            "armature": chain_rig(21),
        },
        "large rig idle (45 bones)": {"prompt": "idle", "object_type": "ARMATURE", "armature": chain_rig(45)},
        "mesh spin": {"prompt": "slow spin", "object_type": "MESH"},
    }
    generator.run_many([requests["mesh spin"]])  # first use: the text encoder loads
    print(f"device: {device_name(generator.model.pos_emb.weight.device)}")
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for name, request in requests.items():
        times, tokens = [], 0
        for seed in range(args.repeats):
            start = time.perf_counter()
            result = generator.run_many([{**request, "seed": seed}])[0]
            times.append(time.perf_counter() - start)
            tokens = result["tokens"]
        median = statistics.median(times)
        print(f"{name:28s} {median:6.2f} s/action  ({tokens} tokens, {tokens / median:6.0f} tokens/s)")
    start = time.perf_counter()
    batch = generator.run_many([{**r, "seed": 0} for r in requests.values()])
    seconds = time.perf_counter() - start
    print(f"{'all three side by side':28s} {seconds / len(batch):6.2f} s/action")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
