"""Structure-first geometry: a structure model writes a layout of part boxes from the prompt, a part
model writes each part's faces in the part's own frame; the parts are assembled into one object.

Both are ``GeometryModel`` decoders (conditioning prefix, KV cache, grammar-constrained sampling):
- structure: conditioned on the prompt's embedding (and, for an exemplar structure model, the
  occupancy grid of the nearest training layout: ``shared.ml.layout_exemplars``), writes
  ``shared.ml.layout_tokens`` under ``LayoutGrammar`` (every decode a valid layout inside the unit cube);
- part: conditioned on ``part_condition`` (prompt, the part's box and descriptor, the layout's
  occupancy grid), writes mesh tokens under ``MeshGrammar`` (every decode a valid mesh), with the
  descriptor's face range as its face budget. The parts of one object, and of every object of a
  batch, decode as one batch; a part whose box mirrors an earlier one's across the layout's
  middle in x (``mirror_pairs``) is not written but takes that part's mesh mirrored.
A part comes out in the unit cube and is stretched per axis onto its box; the object is then
centred and scaled so its longest side is 1, as the flat model's meshes are.

One checkpoint file holds both models (``model_kind: "parts"``); ``load_parts_model`` reads it.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from shared.ml.geometry_model import GeometryModel, GeometryModelConfig, model_from_state, model_state
from shared.ml.layout_exemplars import EXEMPLAR_CONDITION_DIM, LayoutExemplars
from shared.ml.layout_tokens import (
    CONDITION_DIM,
    PART_TOKENS,
    LayoutBox,
    LayoutGrammar,
    LayoutVocabulary,
    layout_middle,
    mirror_pairs,
    occupancy,
    part_condition,
    symmetric_parts,
)
from shared.ml.mesh_symmetry import mirrored_half, reflected
from shared.ml.mesh_tokenizer import MeshGrammar, QuantizedMesh
from shared.ml.part_closing import close_part, closing_limits, edge_counts
from shared.ml.part_decomposition import DecompositionConfig

MODEL_KIND = "parts"
MAX_PARTS = 64
# Where an object's layout comes from: the structure model writes it, or it is the training layout
# whose caption is nearest the prompt (layout_exemplars' library; the part model writes new parts).
LAYOUT_SOURCES = ("written", "nearest")

# Per preset: the structure model, the part model; the decomposition's part budget is 7/8 of the
# part model's context (the rest is headroom for the grammar's end).
PRESETS = {
    # Each trains in <= 30 minutes on 2 CPU cores.
    "tiny": (
        dict(d_model=192, n_layers=4, n_heads=4, prefix_tokens=4, dropout=0.0),
        dict(d_model=256, n_layers=4, n_heads=4, max_tokens=512, prefix_tokens=4, dropout=0.0),
    ),
    # For minutes on a GPU, still served from a CPU: tiny's structure model with dropout (tiny's
    # over-fits the few layouts); a wider, deeper part model with tiny's context (same decomposition).
    "small": (
        dict(d_model=192, n_layers=4, n_heads=4, prefix_tokens=4, dropout=0.2),
        dict(d_model=320, n_layers=6, n_heads=5, max_tokens=512, prefix_tokens=4, dropout=0.1),
    ),
    # For hours on a GPU.
    "base": (
        dict(d_model=512, n_layers=8, n_heads=8, prefix_tokens=8, dropout=0.1),
        dict(d_model=768, n_layers=12, n_heads=12, max_tokens=1024, prefix_tokens=8, dropout=0.1),
    ),
}


def preset_configs(
    name: str, structure_overrides: dict | None = None, part_overrides: dict | None = None
) -> tuple[GeometryModelConfig, GeometryModelConfig, DecompositionConfig]:
    """(structure config, part config, decomposition config) of a preset."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    structure_kw, part_kw = PRESETS[name]
    vocab = LayoutVocabulary(max_parts=MAX_PARTS)
    structure = GeometryModelConfig(
        **{**structure_kw, "max_tokens": vocab.max_tokens, "vocab": vocab.size, **(structure_overrides or {})}
    )
    part = GeometryModelConfig(**{**part_kw, "text_dim": CONDITION_DIM, **(part_overrides or {})})
    decomposition = DecompositionConfig(max_part_tokens=part.max_tokens * 7 // 8, max_parts=MAX_PARTS)
    return structure, part, decomposition


@dataclass
class AssembledMesh:
    vertices: np.ndarray  # (V, 3) floats in the unit cube, centred, longest side 1
    faces: list[tuple[int, ...]]
    layout: list[LayoutBox]
    parts: list[QuantizedMesh]  # each in its own frame, as the part model wrote it
    tokens: int  # layout tokens plus every part's tokens

    def manifold_edge_share(self) -> float:
        """Share of edges with exactly two faces, counted per part (parts are loose pieces)."""
        edges = edge_counts(self.faces)
        return sum(1 for n in edges.values() if n == 2) / max(1, len(edges))


def mirrored(mesh: QuantizedMesh) -> QuantizedMesh:
    """The mesh reflected in x within its own frame, its faces turned so they still face out."""
    vertices = mesh.vertices.copy()
    vertices[:, 0] = (1 << mesh.bits) - 1 - vertices[:, 0]
    return QuantizedMesh(
        vertices, [tuple(reversed(f)) for f in mesh.faces], mesh.bits, mesh.center, mesh.scale
    )


def place_part(mesh: QuantizedMesh, box: LayoutBox) -> np.ndarray:
    """A part's vertices stretched per axis from their own bounding box onto the layout's box."""
    u = mesh.unit_vertices()
    lo, hi = u.min(0), u.max(0)
    extent = hi - lo
    stretched = np.divide(u - (lo + hi) / 2, extent, out=np.zeros_like(u), where=extent > 1e-9)
    return box.centre + stretched * box.size


Placed = tuple[np.ndarray, list[tuple[int, ...]]]  # a part's vertices in the layout's frame, faces


def made_symmetric(
    layout: list[LayoutBox], placed_parts: list[Placed], copies: dict[int, int]
) -> list[Placed] | None:
    """The parts of a symmetric layout (``symmetric_parts``) made exactly symmetric across its middle
    plane: a mirrored pair's second part the first's reflection, a part on the plane its own low-x
    half joined to its reflection (so no face crosses the plane and Blender's Mirror modifier can
    rebuild the object from one half). None for another layout, or where a part on the plane does
    not reach across it."""
    central = symmetric_parts(layout, copies)
    if central is None:
        return None
    plane = layout_middle(layout)
    out = []
    for i, (vertices, faces) in enumerate(placed_parts):
        if i in copies:
            out.append(reflected(*placed_parts[copies[i]], plane))
        elif i in central:
            if not vertices[:, 0].min() < plane < vertices[:, 0].max():
                return None
            out.append(mirrored_half(vertices, faces, plane))
        else:
            out.append((vertices, faces))
    return out


def assemble(
    layout: list[LayoutBox],
    parts: list[QuantizedMesh],
    tokens: int,
    close_within: list[int] | None = None,
    face_budget: int | None = None,
    copies: dict[int, int] | None = None,
) -> AssembledMesh:
    """The parts placed on their boxes as one object. With ``close_within`` (a face limit per part),
    an open part is closed (shared.ml.part_closing) where its limit allows, the limits raised by
    what the parts leave unused of ``face_budget`` (their limits' sum unless given). With
    ``copies`` (the layout's mirrored pairs) a symmetric layout gives an exactly symmetric object
    (``made_symmetric``) where that stays within ``face_budget``."""
    placed_parts: list[Placed] = [
        (place_part(mesh, box), list(mesh.faces)) for box, mesh in zip(layout, parts, strict=True)
    ]
    budget = face_budget
    if close_within is not None:
        unbounded = [close_part(v, f, max_faces=sys.maxsize) for v, f in placed_parts]
        needs = [len(f) for _, f in unbounded]
        budget = sum(close_within) if face_budget is None else face_budget
        limits = closing_limits(needs, close_within, budget)
        placed_parts = [
            closed if need <= limit else close_part(v, f, limit)
            for (v, f), closed, need, limit in zip(placed_parts, unbounded, needs, limits, strict=True)
        ]
    symmetric = made_symmetric(layout, placed_parts, copies) if copies is not None else None
    if symmetric is not None and (budget is None or sum(len(f) for _, f in symmetric) <= budget):
        placed_parts = symmetric
    vertices, faces, offset = [], [], 0
    for placed, part_faces in placed_parts:
        vertices.append(placed)
        faces += [tuple(offset + v for v in f) for f in part_faces]
        offset += len(placed)
    v = np.concatenate(vertices) if vertices else np.zeros((0, 3))
    if len(v):
        lo, hi = v.min(0), v.max(0)
        v = (v - (lo + hi) / 2) / (float((hi - lo).max()) or 1.0)
    return AssembledMesh(v, faces, layout, parts, tokens)


def part_budgets(layout: list[LayoutBox], face_budget: int) -> list[tuple[int, int]]:
    """(min_faces, face_budget) per part: its descriptor's face range, scaled down so the parts
    together stay within the object's face budget."""
    ranges = [box.face_range for box in layout]
    highs = [hi or max(face_budget, lo) for lo, hi in ranges]
    if sum(highs) > face_budget:  # one face each, the rest shared in proportion (a layout has at
        spare = max(0, face_budget - len(highs))  # most face_budget parts)
        extra = max(1, sum(highs) - len(highs))
        highs = [1 + (spare * (hi - 1)) // extra for hi in highs]
    return [(min(lo, hi), hi) for (lo, _), hi in zip(ranges, highs, strict=True)]


def nearest_layout(
    library: LayoutExemplars, text: np.ndarray, face_budget: int, generator: torch.Generator | None
) -> list[LayoutBox]:
    """A prompt's layout from the library: the training layout whose caption is nearest the
    prompt, or one as near (``LayoutExemplars.nearest_alike``) drawn with ``generator``, so a
    prompt's seeds vary the arrangement where the prompt does not choose it; cut to the budget."""
    found = library.nearest_alike(text)
    pick = 0
    if len(found) > 1:
        device = generator.device if generator is not None else "cpu"
        pick = int(torch.randint(len(found), (1,), generator=generator, device=device))
    return library.boxes(found[pick], min(MAX_PARTS, face_budget))


class PartsModel:
    """The structure model and the part model, sampled together."""

    def __init__(
        self,
        structure: GeometryModel,
        part: GeometryModel,
        decomposition: DecompositionConfig,
        close_parts: bool = True,
        layout_guidance: float = 1.0,
        exemplars: LayoutExemplars | None = None,
        layouts: str = "written",
        mirror: bool = True,
    ):
        if not (math.isfinite(layout_guidance) and layout_guidance >= 0):
            raise ValueError(f"layout_guidance must be a finite number >= 0, not {layout_guidance!r}")
        if layouts not in LAYOUT_SOURCES:
            raise ValueError(f"layouts must be one of {LAYOUT_SOURCES}, not {layouts!r}")
        needs_library = structure.config.text_dim == EXEMPLAR_CONDITION_DIM or layouts == "nearest"
        if needs_library != (exemplars is not None):
            raise ValueError(
                "an exemplar structure model, or nearest layouts, comes with its layout library, and only they"
            )
        self.structure, self.part, self.decomposition = structure, part, decomposition
        self.exemplars = exemplars
        self.layouts = layouts
        self.close_parts = close_parts
        self.mirror = mirror
        self.layout_guidance = layout_guidance
        self.vocab = LayoutVocabulary(decomposition.tokenizer.bits, MAX_PARTS)

    @torch.inference_mode()
    def generate_batch(
        self,
        texts: torch.Tensor,
        face_budget: int | Sequence[int] = 200,
        temperature: float = 0.8,
        top_p: float = 0.95,
        generator: Sequence[torch.Generator | None] | None = None,
    ) -> list[AssembledMesh]:
        """An object per row of (B, EMBEDDING_DIM) prompt embeddings: every layout side by side,
        then every part of every object side by side. Row b's parts draw from generators seeded
        from ``generator[b]`` (one draw each), so a row's object does not depend on its batch."""
        rows = texts.shape[0]
        budgets = [face_budget] * rows if isinstance(face_budget, int) else list(face_budget)
        generators: list[torch.Generator | None] = list(generator) if generator is not None else [None] * rows
        if self.layouts == "nearest":
            assert self.exemplars is not None  # __init__'s rule
            rows_in = zip(texts.cpu().numpy(), budgets, generators, strict=True)
            boxes = [nearest_layout(self.exemplars, text, budget, g) for text, budget, g in rows_in]
            counts = [2 + PART_TOKENS * len(rows_boxes) for rows_boxes in boxes]
            return self.write_parts(texts, boxes, budgets, temperature, top_p, generators, counts)
        layouts = [LayoutGrammar(self.vocab, max_parts=min(MAX_PARTS, b)) for b in budgets]
        layout_tokens = self.structure.decode_batch(
            self.structure_conditions(texts),
            layouts,
            temperature,
            top_p,
            generators,
            guidance=self.layout_guidance,
        )
        boxes = [grammar.boxes() for grammar in layouts]
        counts = [len(tokens) for tokens in layout_tokens]
        return self.write_parts(texts, boxes, budgets, temperature, top_p, generators, counts)

    @torch.inference_mode()
    def write_parts(
        self,
        texts: torch.Tensor,
        layouts: list[list[LayoutBox]],
        budgets: list[int],
        temperature: float,
        top_p: float,
        generators: list[torch.Generator | None],
        layout_tokens: list[int],
    ) -> list[AssembledMesh]:
        """The part model's half of ``generate_batch``: every part of every row's layout side by
        side, assembled into one object a row (``layout_tokens``: each layout's token count). A
        part that mirrors an earlier one (``mirror_pairs``) is that part's mesh mirrored, not
        written again, unless ``mirror`` is off."""
        conditions, grammars, part_generators, written = [], [], [], {}
        device = self.part.pos_emb.weight.device  # a sampling generator lives where the model does
        copies = [mirror_pairs(boxes) if self.mirror else {} for boxes in layouts]
        limits = [part_budgets(boxes, budget) for boxes, budget in zip(layouts, budgets, strict=True)]
        for b, boxes in enumerate(layouts):
            grid = occupancy(boxes)
            seeds = torch.randint(0, 2**62, (len(boxes),), generator=generators[b], device=device)
            for i, (low, high) in enumerate(limits[b]):
                if i in copies[b]:
                    continue
                conditions.append(part_condition(texts[b].cpu().numpy(), boxes, i, grid))
                grammars.append(
                    MeshGrammar(
                        self.part.config.tokenizer,
                        face_budget=high,
                        max_tokens=self.part.config.max_tokens,
                        min_faces=low,
                    )
                )
                part_generators.append(torch.Generator(device).manual_seed(int(seeds[i])))
                written[b, i] = len(grammars) - 1
        part_tokens = self.part.decode_batch(
            torch.from_numpy(np.stack(conditions)), grammars, temperature, top_p, part_generators
        )
        out = []
        for b, boxes in enumerate(layouts):
            parts = [
                mirrored(grammars[written[b, copies[b][i]]].mesh())
                if i in copies[b]
                else grammars[written[b, i]].mesh()
                for i in range(len(boxes))
            ]
            tokens = layout_tokens[b] + sum(
                len(part_tokens[k]) for (row, _), k in written.items() if row == b
            )
            close_within = [high for _, high in limits[b]] if self.close_parts else None
            symmetry = copies[b] if self.mirror else None  # off: every part as written
            out.append(assemble(boxes, parts, tokens, close_within, budgets[b], symmetry))
        return out

    def structure_conditions(self, texts: torch.Tensor) -> torch.Tensor:
        """The structure model's conditioning rows: the prompts' embeddings, each followed by its
        nearest training layout's grid for an exemplar structure model."""
        if self.exemplars is None:
            return texts
        rows = [
            self.exemplars.condition(text, self.exemplars.nearest(text)[0]) for text in texts.cpu().numpy()
        ]
        return torch.from_numpy(np.stack(rows)).to(texts.device)


def save_parts_checkpoint(
    path,
    structure: GeometryModel,
    part: GeometryModel,
    decomposition: DecompositionConfig,
    extra: dict | None = None,
    half: bool = False,
    close_parts: bool = True,
    layout_guidance: float = 1.0,
    exemplars: LayoutExemplars | None = None,
    layouts: str = "written",
) -> None:
    """``layout_guidance``: the structure model's classifier-free guidance scale (1: none; more
    only for a structure model trained with condition dropout); ``exemplars``: the layout library
    of an exemplar structure model or of nearest ``layouts`` (LAYOUT_SOURCES)."""
    torch.save(
        {
            "model_kind": MODEL_KIND,
            "close_parts": close_parts,
            "layout_guidance": layout_guidance,
            "layout_exemplars": None if exemplars is None else exemplars.state(),
            "layouts": layouts,
            "structure": model_state(structure, half),
            "part": model_state(part, half),
            "decomposition": decomposition.to_dict(),
            **(extra or {}),
        },
        path,
    )


def load_parts_model(path, device: str = "cpu", half_precision: bool = True) -> tuple[PartsModel, dict]:
    """(both models in eval mode, the whole checkpoint dict) from save_parts_checkpoint's file."""
    ckpt = torch.load(path, map_location=device, weights_only=False)
    if ckpt.get("model_kind") != MODEL_KIND:
        raise ValueError(f"{path} is not a parts checkpoint (model_kind={ckpt.get('model_kind')!r})")
    model = PartsModel(
        model_from_state(ckpt["structure"], device, half_precision),
        model_from_state(ckpt["part"], device, half_precision),
        DecompositionConfig.from_dict(ckpt["decomposition"]),
        close_parts=bool(ckpt.get("close_parts", True)),
        layout_guidance=float(ckpt.get("layout_guidance", 1.0)),
        exemplars=None
        if ckpt.get("layout_exemplars") is None
        else LayoutExemplars.from_state(ckpt["layout_exemplars"]),
        layouts=ckpt.get("layouts", "written"),
    )
    return model, ckpt
