"""shared.inference on its own: the registry of the four specialists, in-process; and the bounded
text-embedding cache the geometry generator (in the gateway or in Triton) reads prompts through."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.inference import Inference, InvalidRequest, ModelUnavailable, SpecialistMissing
from tests.specialist_stubs import STUBS, write_stub_checkpoints


def test_registry_says_which_specialists_are_there_and_why_not(
    geometry_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import shared.inference

    real = shared.inference.generator_class
    monkeypatch.setattr(shared.inference, "generator_class", lambda name: STUBS.get(name) or real(name))
    stubs = write_stub_checkpoints(tmp_path)
    checkpoints = {"geometry": geometry_checkpoint, "material": stubs["material"]}
    checkpoints |= {"modifier": tmp_path / "none.pt", "animation": tmp_path / "none.pt"}
    inference = Inference("local", checkpoints)
    assert inference.available() == {
        "geometry": None,
        "material": None,
        "modifier": f"no modifier checkpoint at {tmp_path / 'none.pt'}",
        "animation": f"no animation checkpoint at {tmp_path / 'none.pt'}",
    }
    mesh = {"vertices": [[0, 0, 0], [1, 0, 0], [0, 1, 0]], "faces": [[0, 1, 2]]}
    (result,) = inference.run_many("material", [{"prompt": "red", "seed": 1, "mesh": mesh}], 30)
    assert result["material"]["pbr"]["roughness"] == 0.4
    with pytest.raises(InvalidRequest, match="material: request 0: the prompt is empty"):
        inference.run_many("material", [{"prompt": " ", "seed": 1, "mesh": mesh}], 30)
    with pytest.raises(SpecialistMissing, match="no modifier checkpoint"):
        inference.run_many("modifier", [{"prompt": "x", "mesh": mesh}], 30)
    with pytest.raises(ModelUnavailable, match="material: no answer within 0.5 s"):
        inference.run_many("material", [{"prompt": "stall", "seed": 1, "mesh": mesh}], 0.5)
    with pytest.raises(ValueError, match="unsupported inference URL"):
        Inference("http://triton:8000", checkpoints)
