"""Prompt + object context -> a shader node graph: a small decoder-only transformer over
shared.ml.material_tokens, with the geometry model's conventions (its blocks, KV cache, fp16
decoding on a CPU, temperature and top-p, grammar-constrained sampling).

Conditioning is a prefix of vectors before BOS: the prompt's frozen sentence embedding
(``prefix_tokens`` vectors), the object's noun and category (one vector, from the embedding of
"noun, category"), and one vector of numbers: the object's size (log metres per axis, with a
flag for "unknown") and the slot's position among the object's material slots.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from shared.ml.geometry_model import (
    Block,
    Decoder,
    KVCache,
    Linear,
    load_weights,
    prepared_blocks,
    sample_token,
)
from shared.ml.geometry_model import save_checkpoint as save_checkpoint  # any model with a config
from shared.ml.material_tokens import BOS, EOS, PAD, Graph, MaterialGrammar, vocabulary
from shared.ml.text_embedding import EMBEDDING_DIM

PRESETS = {
    # Trains in minutes on 2 CPU cores; about 1M parameters.
    "tiny": dict(d_model=128, n_layers=3, n_heads=4, max_tokens=128, prefix_tokens=2, dropout=0.2),
    # For a GPU: about 25M parameters, the longest graphs of the corpus.
    "base": dict(d_model=512, n_layers=8, n_heads=8, max_tokens=320, prefix_tokens=4, dropout=0.1),
}
CONTEXT_FEATURES = 6  # log size x, y, z; size known; slot position; slot count


@dataclass
class MaterialModelConfig:
    d_model: int = 128
    n_layers: int = 3
    n_heads: int = 4
    max_tokens: int = 128  # BOS .. EOS
    prefix_tokens: int = 2
    dropout: float = 0.1
    text_dim: int = EMBEDDING_DIM
    max_nodes: int = 48

    @property
    def vocab_size(self) -> int:
        return vocabulary().size

    @property
    def prefix_length(self) -> int:
        return self.prefix_tokens + 2  # the prompt's, the object's, the numbers'

    @classmethod
    def preset(cls, name: str, **overrides) -> MaterialModelConfig:
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> MaterialModelConfig:
        return cls(**data)


def context_features(size: Sequence[float] | None, slot: int = 0, slots: int = 1) -> np.ndarray:
    """The numbers the model sees about the object: log10 of its size per axis (metres, clipped
    to 1 mm .. 1 km) and whether it is known, the slot's position (0 first .. 1 last) and the
    number of slots (over 8)."""
    known = size is not None and len(size) == 3
    logs = np.log10(np.clip(np.asarray(size if known else [1, 1, 1], dtype=np.float64), 1e-3, 1e3))
    position = slot / (slots - 1) if slots > 1 else 0.0
    return np.array([*logs, float(known), position, min(slots, 8) / 8], dtype=np.float32)


class MaterialModel(Decoder):
    def __init__(self, config: MaterialModelConfig):
        super().__init__()
        self.config = c = config
        self.text_proj = nn.Linear(c.text_dim, c.prefix_tokens * c.d_model)
        self.object_proj = nn.Linear(c.text_dim, c.d_model)
        self.numbers_proj = nn.Sequential(
            nn.Linear(CONTEXT_FEATURES, c.d_model), nn.GELU(), nn.Linear(c.d_model, c.d_model)
        )
        self.tok_emb = nn.Embedding(c.vocab_size, c.d_model)
        self.pos_emb = nn.Embedding(c.prefix_length + c.max_tokens, c.d_model)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.n_layers))  # type: ignore[arg-type]
        self.ln_f = nn.LayerNorm(c.d_model)
        self.head = Linear(c.d_model, c.vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight  # tied
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith("attn.proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * c.n_layers))

    @staticmethod
    def _init(m):
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def _prefix(self, text: torch.Tensor, objects: torch.Tensor, numbers: torch.Tensor) -> torch.Tensor:
        c = self.config
        return torch.cat(
            [
                self.text_proj(text).view(text.shape[0], c.prefix_tokens, c.d_model),
                self.object_proj(objects).unsqueeze(1),
                self.numbers_proj(numbers).unsqueeze(1),
            ],
            1,
        )

    def forward(self, text, objects, numbers, tokens, targets=None):
        """Logits (B, T, V) for the token after each of ``tokens``; with targets also the mean loss."""
        if tokens.shape[1] > self.config.max_tokens:
            raise ValueError(
                f"sequence of {tokens.shape[1]} tokens exceeds max_tokens={self.config.max_tokens}"
            )
        x = torch.cat([self._prefix(text, objects, numbers), self.tok_emb(tokens)], 1)
        logits = self.head(self._run(x)[:, self.config.prefix_length :])
        if targets is None:
            return logits, None
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=PAD
        )
        return logits, loss

    @torch.inference_mode()
    def generate_batch(
        self,
        text: torch.Tensor,
        objects: torch.Tensor,
        numbers: torch.Tensor,
        temperature: float = 0.7,
        top_p: float = 0.9,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
    ) -> list[tuple[list[int], Graph]]:
        """A grammar-constrained sample per row, decoded side by side with a KV cache; rows leave
        the batch when they end."""
        self.eval()
        c = self.config
        rows_n = text.shape[0]
        generators = generator if isinstance(generator, Sequence) else [generator] * rows_n
        device = self.pos_emb.weight.device
        grammars = [MaterialGrammar(c.max_tokens, c.max_nodes) for _ in range(rows_n)]
        tokens = [[BOS] for _ in grammars]
        x = torch.cat(
            [
                self._prefix(text.to(device), objects.to(device), numbers.to(device)),
                self.tok_emb(torch.full((rows_n, 1), BOS, device=device)),
            ],
            1,
        )
        cache = KVCache(c, rows_n, c.prefix_length + c.max_tokens, device, x.dtype)  # type: ignore[arg-type]
        blocks, head = prepared_blocks(self.blocks), self.head.product()
        hidden = self._run(x, cache, blocks)
        rows = list(range(rows_n))
        while rows:
            allowed = np.stack([grammars[i].allowed_mask() for i in rows])
            masks = torch.from_numpy(allowed).to(device)
            logits = head(hidden[:, -1]).float()
            going = []
            for b, i in enumerate(rows):
                token = sample_token(logits[b], masks[b], temperature, top_p, generators[i])
                grammars[i].feed(token, allowed[b])
                tokens[i].append(token)
                if token != EOS:
                    going.append(b)
            if len(going) < len(rows):
                cache.keep(torch.tensor(going, device=device, dtype=torch.long))
                rows = [rows[b] for b in going]
                if not rows:
                    break
            step = torch.tensor([[tokens[i][-1]] for i in rows], device=device)
            hidden = self._run(self.tok_emb(step), cache, blocks)
        return [(t, g.graph) for t, g in zip(tokens, grammars, strict=True)]


def load_model(path, device: str = "cpu", half_precision: bool = False) -> tuple[MaterialModel, dict]:
    """(model in eval mode, checkpoint dict). fp32 by default: at d_model 128 the weights fit in
    cache, and the fp16 path's conversions cost more than the bytes it saves."""
    ckpt = torch.load(path, map_location=device, weights_only=False)
    model = MaterialModel(MaterialModelConfig.from_dict(ckpt["model_config"]))
    load_weights(model, ckpt["state_dict"])  # type: ignore[arg-type]  # any model with tied tok_emb/head
    model.use_half_precision(half_precision and device == "cpu")
    return model.to(device).eval(), ckpt
