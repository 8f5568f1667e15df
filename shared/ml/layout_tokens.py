"""Layout tokens of structure-first geometry: an object as a sequence of part boxes, with a grammar.

Pure Python + numpy (no torch). A layout is the parts of ``shared.ml.part_decomposition`` in
their order, each written as seven tokens::

    layout := BOS part{1..max_parts} EOS
    part   := CX CY CZ SX SY SZ D

- ``CX CY CZ``: the box centre in the object's unit frame, one grid step of ``bits`` per axis over
  [-0.5, 0.5]; ``SX SY SZ``: the box sides over [0, 1]; each slot has its own token range.
- ``D``: the part's descriptor, a bucket of its face count (1, 2-3, 4-7, ... 128 and more faces),
  which tells the part model how much to write.

``LayoutGrammar`` allows only a side that keeps the box inside the unit cube (so an assembled
object always is), and EOS only between parts, so every constrained decode is a valid layout.
``part_condition`` is what the part model is conditioned on: the prompt's embedding, the part's
box and descriptor, and the whole layout as a coarse occupancy grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.ml.mesh_tokenizer import BOS, EOS, TokenizerError
from shared.ml.text_embedding import EMBEDDING_DIM

DESCRIPTORS = 8  # face-count buckets: [2**d, 2**(d+1) - 1], the last one open
SLOTS = 6  # centre x, y, z, size x, y, z
PART_TOKENS = SLOTS + 1
OCCUPANCY_SIDE = 8  # the layout as an 8x8x8 grid of the unit cube
# Two boxes mirror each other when their centres and sides agree within two steps of the 7-bit grid.
MIRROR_TOLERANCE = 2 / 127


@dataclass(frozen=True)
class LayoutBox:
    """One part of a layout, dequantised: box centre and sides in the unit frame, descriptor."""

    centre: np.ndarray
    size: np.ndarray
    descriptor: int

    @property
    def face_range(self) -> tuple[int, int]:
        return face_range(self.descriptor)


def descriptor(face_count: int) -> int:
    return min(DESCRIPTORS - 1, max(0, int(face_count).bit_length() - 1))


def face_range(descriptor: int) -> tuple[int, int]:
    """(fewest, most) faces of a descriptor's bucket; the last bucket's most is unbounded (0)."""
    return 1 << descriptor, 0 if descriptor == DESCRIPTORS - 1 else (1 << (descriptor + 1)) - 1


class LayoutVocabulary:
    def __init__(self, bits: int = 7, max_parts: int = 64):
        self.bits, self.max_parts = bits, max_parts
        self.steps = 1 << bits
        self.slot0 = 3
        self.descriptor0 = self.slot0 + SLOTS * self.steps
        self.size = self.descriptor0 + DESCRIPTORS
        self.max_tokens = 2 + PART_TOKENS * max_parts

    def encode(self, boxes: list[tuple[np.ndarray, np.ndarray, int]]) -> list[int]:
        """BOS, seven tokens per (quantised centre, quantised size, descriptor), EOS."""
        if not 1 <= len(boxes) <= self.max_parts:
            raise TokenizerError(f"a layout has 1 to {self.max_parts} parts, not {len(boxes)}")
        tokens = [BOS]
        for q_centre, q_size, d in boxes:
            values = [*np.asarray(q_centre).tolist(), *np.asarray(q_size).tolist()]
            tokens += [self.slot0 + k * self.steps + int(v) for k, v in enumerate(values)]
            tokens.append(self.descriptor0 + int(d))
        return tokens + [EOS]

    def dequantize(self, values: list[int]) -> LayoutBox:
        top = self.steps - 1
        centre = np.array(values[:3], dtype=np.float64) / top - 0.5
        size = np.array(values[3:6], dtype=np.float64) / top
        return LayoutBox(centre, size, int(values[6]))


class LayoutGrammar:
    """Decoder state machine over layout tokens (after BOS), as ``MeshGrammar`` is for meshes."""

    def __init__(self, vocab: LayoutVocabulary, max_parts: int | None = None):
        self.vocab = vocab
        self.max_parts = min(max_parts or vocab.max_parts, vocab.max_parts)
        self.values: list[int] = []  # slot values of every part so far, seven per part
        self.done = False
        self._mask: np.ndarray | None = None

    @property
    def parts(self) -> int:
        return len(self.values) // PART_TOKENS

    def allowed_mask(self) -> np.ndarray:
        if self._mask is None:
            self._mask = self._compute_mask()
            self._mask.flags.writeable = False
        return self._mask

    def _compute_mask(self) -> np.ndarray:
        v = self.vocab
        mask = np.zeros(v.size, dtype=bool)
        if self.done:
            return mask
        slot = len(self.values) % PART_TOKENS
        if slot == 0:
            mask[EOS] = self.parts >= 1
            if self.parts < self.max_parts:
                mask[v.slot0 : v.slot0 + v.steps] = True
        elif slot < 3:
            mask[v.slot0 + slot * v.steps : v.slot0 + (slot + 1) * v.steps] = True
        elif slot < SLOTS:
            # A side that keeps the box in the unit cube: half of it fits on both sides of the centre.
            c = self.values[-3]
            widest = min(v.steps - 1, 2 * min(c, v.steps - 1 - c))
            start = v.slot0 + slot * v.steps
            mask[start : start + widest + 1] = True
        else:
            mask[v.descriptor0 : v.descriptor0 + DESCRIPTORS] = True
        return mask

    def feed(self, token: int) -> None:
        if not (0 <= token < self.vocab.size and self.allowed_mask()[token]):
            raise TokenizerError(f"layout token {token} is not allowed here")
        self._mask = None
        if token == EOS:
            self.done = True
            return
        slot = len(self.values) % PART_TOKENS
        base = self.vocab.descriptor0 if slot == SLOTS else self.vocab.slot0 + slot * self.vocab.steps
        self.values.append(token - base)

    def boxes(self) -> list[LayoutBox]:
        """The finished parts, dequantised."""
        return [
            self.vocab.dequantize(self.values[i : i + PART_TOKENS])
            for i in range(0, self.parts * PART_TOKENS, PART_TOKENS)
        ]


def mirror_pairs(boxes: list[LayoutBox], tolerance: float = MIRROR_TOLERANCE) -> dict[int, int]:
    """Parts that mirror an earlier part across the layout's middle plane in x, {later: earlier}:
    the same descriptor, sides alike, centres mirrored, neither on the plane. x is the axis across
    which Blender's assets are symmetric (a character's arms, a chair's legs, a car's wheels)."""
    if not boxes:
        return {}
    centres = np.array([b.centre for b in boxes])
    sizes = np.array([b.size for b in boxes])
    middle = layout_middle(boxes)
    reflected = centres.copy()
    reflected[:, 0] = 2 * middle - reflected[:, 0]
    copies: dict[int, int] = {}
    for i in range(len(boxes)):
        if i in copies or abs(centres[i, 0] - middle) <= tolerance:
            continue
        for j in range(i + 1, len(boxes)):
            if (
                j not in copies
                and boxes[j].descriptor == boxes[i].descriptor
                and np.abs(reflected[j] - centres[i]).max() <= tolerance
                and np.abs(sizes[j] - sizes[i]).max() <= tolerance
            ):
                copies[j] = i
                break
    return copies


def layout_middle(boxes: list[LayoutBox]) -> float:
    """x of the plane halfway across the layout's boxes: the plane mirrored parts mirror across."""
    low = min(b.centre[0] - b.size[0] / 2 for b in boxes)
    high = max(b.centre[0] + b.size[0] / 2 for b in boxes)
    return float(low + high) / 2


def symmetric_parts(
    boxes: list[LayoutBox], copies: dict[int, int], tolerance: float = MIRROR_TOLERANCE
) -> list[int] | None:
    """For a layout symmetric across its middle plane in x (every part in a mirrored pair,
    ``copies`` from ``mirror_pairs``, or centred on the plane, and at least two parts): the parts
    on the plane. None for any other layout: a lone part off the plane, or a single part (a rock's
    one box sits on the plane too; nothing says the object is symmetric)."""
    if len(boxes) < 2:
        return None
    middle = layout_middle(boxes)
    paired = set(copies) | set(copies.values())
    central = [i for i, b in enumerate(boxes) if i not in paired and abs(b.centre[0] - middle) <= tolerance]
    return central if len(paired) + len(central) == len(boxes) else None


def decode_layout(tokens: list[int], vocab: LayoutVocabulary) -> list[LayoutBox]:
    grammar = LayoutGrammar(vocab)
    for t in tokens[1:] if tokens and tokens[0] == BOS else tokens:
        grammar.feed(int(t))
    if not grammar.done:
        raise TokenizerError("layout ended before EOS")
    return grammar.boxes()


def occupancy(boxes: list[LayoutBox]) -> np.ndarray:
    """Share of each cell of an OCCUPANCY_SIDE**3 grid over the unit cube that the boxes cover
    (summed over boxes, at most 1), flattened: the whole layout in a fixed-size vector."""
    edges = np.linspace(-0.5, 0.5, OCCUPANCY_SIDE + 1)
    cell = 1.0 / OCCUPANCY_SIDE
    grid = np.zeros((OCCUPANCY_SIDE,) * 3)
    for box in boxes:
        lo, hi = box.centre - box.size / 2, box.centre + box.size / 2
        # Per axis, the covered share of each cell; a flat side counts as a thin slab.
        shares = [
            np.clip(np.minimum(hi[a], edges[1:]) - np.maximum(lo[a], edges[:-1]), 0, None) / cell
            if box.size[a] > 1e-6
            else ((edges[:-1] <= box.centre[a]) & (box.centre[a] <= edges[1:])) / OCCUPANCY_SIDE
            for a in range(3)
        ]
        grid += np.einsum("i,j,k->ijk", *shares)
    return np.minimum(grid, 1.0).reshape(-1)


CONDITION_DIM = EMBEDDING_DIM + SLOTS + DESCRIPTORS + OCCUPANCY_SIDE**3


def part_condition(
    text: np.ndarray, boxes: list[LayoutBox], index: int, layout: np.ndarray | None = None
) -> np.ndarray:
    """The part model's conditioning vector for part ``index`` of a layout: the prompt's
    embedding, the box (centre and sides), the descriptor one-hot and the layout's occupancy
    (pass ``layout=occupancy(boxes)`` to share it between the parts of one object)."""
    box = boxes[index]
    one_hot = np.zeros(DESCRIPTORS)
    one_hot[box.descriptor] = 1.0
    grid = occupancy(boxes) if layout is None else layout
    return np.concatenate([text, box.centre, box.size, one_hot, grid]).astype(np.float32)
