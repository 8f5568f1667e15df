"""Layout exemplars: training layouts a structure model is shown beside the prompt.

Retrieval-augmented structure (anchors: ReMoDiffuse for text-to-motion, retrieval-augmented
generation). From 1,468 training layouts the structure model does not learn an object's global
shape from a sentence embedding alone, while the training object whose caption is nearest the
prompt is the right kind of object far more often (category accuracy 0.43 against the structure
model's 0.16 on the test split). So an exemplar structure model is conditioned on the prompt and
on a retrieved layout's occupancy grid (``layout_tokens.occupancy``): it writes a layout of its
own, near the exemplar's overall shape. In training an object's exemplar is drawn from the
``TRAINING_CHOICES`` nearest objects of other packs (a test prompt's pack is never among the
training ones); in generation it is the nearest training object.

Pure numpy (no torch): the library travels inside a parts checkpoint as ``state()``.
"""

from __future__ import annotations

import numpy as np

from shared.ml.layout_tokens import OCCUPANCY_SIDE, LayoutBox, LayoutVocabulary, occupancy
from shared.ml.text_embedding import EMBEDDING_DIM

TRAINING_CHOICES = 4
# Training objects whose captions score within ALIKE_MARGIN (cosine) of the nearest one's are as near
# the prompt as it is (several share the very caption: "a wooden chair" six times): a sample's seed
# picks one of them, at most ALIKE_CHOICES.
ALIKE_MARGIN, ALIKE_CHOICES = 0.02, 8
EXEMPLAR_CONDITION_DIM = EMBEDDING_DIM + OCCUPANCY_SIDE**3


def best_caption_scores(caption_scores: np.ndarray, caption_items: np.ndarray) -> np.ndarray:
    """Per item index, the score of its best caption (-inf for an index with no caption)."""
    items = np.asarray(caption_items)
    best = np.full(int(items.max()) + 1 if len(items) else 0, -np.inf)
    np.maximum.at(best, items, np.asarray(caption_scores, dtype=np.float64))
    return best


def top_k_distinct(caption_scores: np.ndarray, caption_items: np.ndarray, k: int) -> list[int]:
    """The k items (indices) whose best caption scores highest, each item once, best first."""
    best = best_caption_scores(caption_scores, caption_items)
    present = np.unique(caption_items)
    return [int(i) for i in present[np.lexsort((present, -best[present]))][:k]]


class LayoutExemplars:
    """Training objects' layouts, found by caption: ``nearest`` items, their ``condition`` vectors."""

    def __init__(
        self,
        caption_vectors: np.ndarray,
        caption_items: np.ndarray,
        layouts: list[np.ndarray],
        packs: list[str],
        bits: int,
    ):
        """``caption_vectors`` (C, EMBEDDING_DIM) every training caption's embedding, ``caption_items``
        (C,) the item each belongs to; per item its layout as (parts, 7) grid values (centre, sides,
        descriptor) and its pack."""
        if len(caption_vectors) != len(caption_items) or not len(layouts) == len(packs) > 0:
            raise ValueError("a layout library needs one item per caption and a pack per layout")
        self.caption_vectors = np.asarray(caption_vectors, dtype=np.float32)
        self.caption_items = np.asarray(caption_items, dtype=np.int64)
        self.layouts = [np.asarray(layout, dtype=np.int16) for layout in layouts]
        self.packs = np.asarray(packs)
        self.bits = bits
        self.vocab = LayoutVocabulary(bits)
        self.grids = np.stack([occupancy(self.boxes(i)) for i in range(len(self.layouts))]).astype(np.float32)

    @classmethod
    def from_objects(cls, objects: list[dict], caption_vectors: dict[str, np.ndarray], bits: int):
        """From decomposed objects (``geometry_parts.decompositions``) and their captions' embeddings."""
        captions = [(c, i) for i, o in enumerate(objects) for c in o["captions"]]
        layouts = [
            np.array([[*p["centre"], *p["size"], p["descriptor"]] for p in o["parts"]]) for o in objects
        ]
        return cls(
            np.stack([caption_vectors[c] for c, _ in captions]),
            np.array([i for _, i in captions]),
            layouts,
            [o.get("pack") or o["id"] for o in objects],  # without a pack, an object is its own
            bits,
        )

    def boxes(self, item: int, max_parts: int | None = None) -> list[LayoutBox]:
        """Item ``item``'s layout, dequantised: its first ``max_parts`` parts (all by default)."""
        return [self.vocab.dequantize([int(v) for v in part]) for part in self.layouts[item][:max_parts]]

    def __len__(self) -> int:
        return len(self.layouts)

    def nearest(self, vector: np.ndarray, k: int = 1, exclude_pack: str | None = None) -> list[int]:
        """The k items whose best caption is nearest ``vector``, best first, none of ``exclude_pack``."""
        scores = self.caption_vectors @ np.asarray(vector, dtype=np.float32)
        if exclude_pack is None:
            return top_k_distinct(scores, self.caption_items, k)
        keep = self.packs[self.caption_items] != exclude_pack
        return top_k_distinct(scores[keep], self.caption_items[keep], k)

    def nearest_alike(
        self, vector: np.ndarray, margin: float = ALIKE_MARGIN, k: int = ALIKE_CHOICES
    ) -> list[int]:
        """The nearest item and the others whose best caption scores within ``margin`` of its,
        best first, at most ``k``."""
        scores = self.caption_vectors @ np.asarray(vector, dtype=np.float32)
        found = top_k_distinct(scores, self.caption_items, k)
        best = best_caption_scores(scores, self.caption_items)
        return [item for item in found if best[item] >= best[found[0]] - margin]

    def condition(self, text: np.ndarray, item: int) -> np.ndarray:
        """The structure model's conditioning vector: the prompt's embedding, then the exemplar's grid."""
        return np.concatenate([np.asarray(text, dtype=np.float32), self.grids[item]])

    def state(self) -> dict:
        """What a checkpoint stores (numpy arrays and lists; ``from_state`` reads it back)."""
        return {
            "caption_vectors": self.caption_vectors.astype(np.float16),
            "caption_items": self.caption_items.astype(np.int32),
            "layouts": np.concatenate(self.layouts),  # one array, not one pickled array a layout
            "layout_parts": np.array([len(layout) for layout in self.layouts], dtype=np.int32),
            "packs": self.packs.tolist(),
            "bits": self.bits,
        }

    @classmethod
    def from_state(cls, state: dict) -> LayoutExemplars:
        return cls(
            state["caption_vectors"].astype(np.float32),
            state["caption_items"],
            np.split(state["layouts"], np.cumsum(state["layout_parts"])[:-1]),
            state["packs"],
            state["bits"],
        )
