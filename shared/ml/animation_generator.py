"""Prompt + target -> a Blender action with the animation model: the sampling side, loaded alike
in-process (embedded default) and inside Triton (services/serving)."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from shared.ml.animation_model import Target, load_model
from shared.ml.animation_tokens import CYCLIC_MOTIONS, Motion, MotionLayout, motion_label
from shared.ml.text_embedding import embed
from shared.scene.models import Action, Armature, Transform

OBJECT_TYPES = ("MESH", "ARMATURE")
TRAINING_FPS = 24.0  # durations are learnt in frames of the corpus, mostly 24 fps


def _number(request: dict, key: str, default: float, low: float, high: float) -> float:
    value = request.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(f"{key} must be a number from {low} to {high}, not {value!r}")
    return float(value)


def action_name(prompt: str) -> str:
    """A readable action name from a prompt: "slow spin!" -> "Slow Spin"."""
    words = re.findall(r"[A-Za-z0-9]+", prompt)[:6]
    return " ".join(w.capitalize() for w in words) or "Generated"


class AnimationGenerator:
    """Actions for prompts, each on its own target.

    A request is a JSON-able dict::

        {"prompt": "walk cycle",                 required, non-empty
         "object_type": "MESH" | "ARMATURE",     required
         "armature": {"name", "bones": [...]},   scene-format Armature; required for ARMATURE
         "category": "character",                optional: joins the prompt for the text encoder
         "transform": {"location", "rotation_euler", "scale"},  optional: a MESH object's
                                                 current transform, which its motion starts from
         "fps": 24,                              optional: the scene's frame rate (1..240)
         "seed": 0, "temperature": 0.8, "top_p": 0.95}   optional sampling settings

    and its result::

        {"action": <scene-format Action dict: F-curves on pose.bones["..."].rotation_quaternion
                    and .location for a rig, location / rotation_euler / scale for an object>,
         "animation": {"action": <its name>},   the object's animation reference (scene format)
         "loop": bool, "frame_range": [start, end], "tokens": int,
         "seconds": decoding time of the batch it was in, "batch": requests decoded with it}

    A prompt that names a cyclic motion (walk, run, idle, swim, fly, spin, bounce, hover, sway)
    gets a loop. A bad request raises ValueError saying what is wrong. Requests are decoded side
    by side (those with the same top_p), each with its own seeded generator.
    """

    def __init__(self, checkpoint: str | Path, device: str | None = None):
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model, meta = load_model(checkpoint, self.device)
        self.checkpoint = str(checkpoint)
        self.meta = {k: v for k, v in meta.items() if k not in ("state_dict", "optimizer")}
        self._lock = threading.Lock()

    def _parse(self, request: Any) -> dict:
        if not isinstance(request, dict):
            raise ValueError(f"a request is a JSON object, not {type(request).__name__}")
        prompt = request.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError("the prompt is empty")
        kind = request.get("object_type")
        if kind not in OBJECT_TYPES:
            raise ValueError(f"object_type must be one of {', '.join(OBJECT_TYPES)}, not {kind!r}")
        category = request.get("category")
        if category is not None and not isinstance(category, str):
            raise ValueError("category must be a string")
        armature = None
        if kind == "ARMATURE":
            if request.get("armature") is None:
                raise ValueError("an ARMATURE request needs its armature (the rig's bones)")
            try:
                armature = Armature.model_validate(request["armature"]).model_dump(mode="json")
            except ValidationError as exc:
                raise ValueError(f"armature: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from exc
            if not armature["bones"]:
                raise ValueError("the armature has no bones")
        try:
            transform = Transform.model_validate(request.get("transform") or {}).model_dump(mode="json")
        except ValidationError as exc:
            raise ValueError(f"transform: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from exc
        seed = request.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, not {seed!r}")
        try:
            layout = MotionLayout(armature)
        except ValueError as exc:
            raise ValueError(f"armature: {exc}") from exc
        if layout.sequence_length() > self.model.config.max_tokens:
            raise ValueError(
                f"the rig has {len(layout.names)} bones; this model animates rigs of up to about "
                f"{self.model.config.max_tokens // 30} bones"
            )
        return {
            "text": f"{prompt.strip()} ({category})" if category else prompt.strip(),
            "name": action_name(prompt),
            "layout": layout,
            "transform": transform,
            "fps": _number(request, "fps", TRAINING_FPS, 1.0, 240.0),
            "seed": seed,
            "temperature": _number(request, "temperature", 0.8, 0.0, 2.0),
            "top_p": _number(request, "top_p", 0.95, 0.01, 1.0),
        }

    def run_many(self, requests: list[dict]) -> list[dict]:
        """A result per request (see the class docstring); ValueError on the first bad request."""
        parsed = [self._parse(r) for r in requests]
        groups: dict[float, list[int]] = {}
        for i, p in enumerate(parsed):
            groups.setdefault(p["top_p"], []).append(i)
        results: list[dict] = [{} for _ in parsed]
        for top_p, rows in groups.items():
            start = time.perf_counter()
            texts = torch.stack([torch.from_numpy(embed([parsed[i]["text"]])[0]) for i in rows])
            generators = [torch.Generator(device=self.device).manual_seed(parsed[i]["seed"]) for i in rows]
            with self._lock:
                samples = self.model.generate_batch(
                    texts,
                    [Target.of(parsed[i]["layout"]) for i in rows],
                    temperature=[parsed[i]["temperature"] for i in rows],
                    top_p=top_p,
                    generator=generators,
                    loops=[True if motion_label(parsed[i]["text"]) in CYCLIC_MOTIONS else None for i in rows],
                )
            seconds = round(time.perf_counter() - start, 4)
            for i, (tokens, motion) in zip(rows, samples, strict=True):
                p = parsed[i]
                timed = Motion(motion.loop, motion.duration * p["fps"] / TRAINING_FPS, motion.values)
                action = p["layout"].to_action(timed, p["name"], base=p["transform"])
                results[i] = {
                    "action": Action.model_validate(action).model_dump(mode="json"),
                    "animation": {"action": p["name"]},
                    "loop": motion.loop,
                    "frame_range": action["frame_range"],
                    "tokens": len(tokens),
                    "seconds": seconds,
                    "batch": len(rows),
                }
        return results
