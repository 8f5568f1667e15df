"""The modifier model: mesh features plus the prompt's embedding -> a stack, as slots.

A per-slot classifier (chosen over nearest-neighbour copying and gradient-boosted trees by the
validation measurements in the model card): an MLP reads the standardised structure features of
the finished mesh (shared.ml.modifier_structure.features) beside the prompt's sentence embedding,
and answers, per supported type, whether it is in the stack, and per parameter head a class
(shared.ml.modifier_tokens). The canonical order of TYPES makes the slots a stack; the grammar of
the classes makes every answer a stack Blender accepts. No decoding loop: one forward pass answers
a whole batch of meshes.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from shared.ml.modifier_structure import FEATURE_NAMES
from shared.ml.modifier_tokens import HEADS, TYPES, Slots
from shared.ml.text_embedding import EMBEDDING_DIM


@dataclass
class ModifierModelConfig:
    features: int = len(FEATURE_NAMES)
    text: int = EMBEDDING_DIM
    text_width: int = 32  # the prompt is squeezed first, so 384 text inputs do not drown the mesh ones
    hidden: int = 128
    layers: int = 2
    dropout: float = 0.2
    # A linear path from the standardised features straight to the presence logits, beside the
    # MLP (wide and deep): the detectors' own findings (a Mirror, Array or Solidify rule that
    # peels the mesh) are single features the deep path learns slowly from few positives.
    wide: bool = False

    @classmethod
    def preset(cls, name: str, **overrides) -> ModifierModelConfig:
        presets: dict[str, dict[str, Any]] = {
            "tiny": {"wide": True},
            "base": {"text_width": 64, "hidden": 512, "layers": 3, "dropout": 0.3, "wide": True},
        }
        if name not in presets:
            raise ValueError(f"unknown preset {name!r}; expected one of {sorted(presets)}")
        return cls(**{**presets[name], **overrides})


class ModifierModel(nn.Module):
    feature_mean: torch.Tensor
    feature_scale: torch.Tensor

    def __init__(self, config: ModifierModelConfig):
        super().__init__()
        self.config = config
        # Feature standardisation learnt from the training set, saved with the weights.
        self.register_buffer("feature_mean", torch.zeros(config.features))
        self.register_buffer("feature_scale", torch.ones(config.features))
        self.text = nn.Sequential(nn.Linear(config.text, config.text_width), nn.GELU())
        layers: list[nn.Module] = []
        width = config.features + config.text_width
        for _ in range(config.layers):
            layers += [nn.Linear(width, config.hidden), nn.GELU(), nn.Dropout(config.dropout)]
            width = config.hidden
        self.trunk = nn.Sequential(*layers)
        self.presence = nn.Linear(width, len(TYPES))
        self.heads = nn.ModuleDict({name: nn.Linear(width, size) for name, size in HEADS.items()})
        self.wide = nn.Linear(config.features, len(TYPES), bias=False) if config.wide else None
        if self.wide is not None:
            nn.init.zeros_(self.wide.weight)

    def forward(
        self, features: torch.Tensor, text: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x = (features - self.feature_mean) / self.feature_scale
        h = self.trunk(torch.cat([x, self.text(text)], dim=-1))
        presence = self.presence(h)
        if self.wide is not None:
            presence = presence + self.wide(x)
        return presence, {name: head(h) for name, head in self.heads.items()}

    @torch.no_grad()
    def predict(
        self,
        features: np.ndarray,
        text: np.ndarray,
        threshold: float = 0.5,
        at_least_one: Sequence[bool | Collection[str]] | None = None,
    ) -> list[Slots]:
        """Slots per row: a type is present when its probability passes ``threshold``; each head
        takes its most probable class. A row marked in ``at_least_one`` (a stack is wanted: the user
        asked for modifiers) gets its most probable type where none passes the threshold; marked
        with a collection of types, the most probable of those where none of them passes."""
        device = self.feature_mean.device
        presence, heads = self(
            torch.as_tensor(features, dtype=torch.float32, device=device),
            torch.as_tensor(text, dtype=torch.float32, device=device),
        )
        probability = torch.sigmoid(presence).cpu().numpy()
        present = probability >= threshold
        for row, wanted in enumerate(at_least_one or []):
            allowed = np.array([wanted is True or (wanted is not False and t in wanted) for t in TYPES])
            if allowed.any() and not present[row, allowed].any():
                present[row, np.flatnonzero(allowed)[probability[row, allowed].argmax()]] = True
        classes = {name: logits.argmax(-1).cpu().numpy() for name, logits in heads.items()}
        return [
            Slots(
                {t: bool(present[i, k]) for k, t in enumerate(TYPES)},
                {name: int(values[i]) for name, values in classes.items()},
            )
            for i in range(len(present))
        ]


def save_checkpoint(path, model: ModifierModel, extra: dict | None = None, half: bool = False) -> None:
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    torch.save({"model_config": asdict(model.config), "state_dict": state, **(extra or {})}, path)


def load_model(path, device: str = "cpu") -> tuple[ModifierModel, dict]:
    """(model in eval mode, the whole checkpoint dict); fp16 files are widened to fp32."""
    ckpt = torch.load(path, map_location=device, weights_only=False)
    model = ModifierModel(ModifierModelConfig(**ckpt["model_config"]))
    model.load_state_dict(
        {k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    )
    return model.to(device).eval(), ckpt
