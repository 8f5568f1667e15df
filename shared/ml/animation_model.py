"""Prompt + target (a rig, or an object) -> motion tokens: a small decoder-only transformer.

The prompt's frozen sentence embedding (shared.ml.text_embedding) becomes a few prefix vectors.
The target enters every position: the input at a position carries, besides its token, what the
NEXT token is (a header field, or the value of channel kind/axis of bone b at key k), and for a
bone, that bone's features (shared.ml.animation_tokens.MotionLayout.features: depth, parent,
rest head and tail, side, name words...). So the model writes each value knowing which bone of
this rig it is for, and a rig it has never seen gets channels in its own bone order. Blocks, the
KV cache and top-p sampling are the geometry model's (shared.ml.geometry_model); sampling is
constrained by MotionGrammar, so every sample decodes to a motion on the target's channels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import cast

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from shared.ml.animation_tokens import (
    BONE_FEATURES,
    BOS,
    EOS,
    KEYS,
    KINDS,
    MOTION_TOKENS,
    PAD,
    Motion,
    MotionGrammar,
    MotionLayout,
)
from shared.ml.geometry_model import Block, Decoder, Linear, sample_logits
from shared.ml.text_embedding import EMBEDDING_DIM

PRESETS = {
    # Trains in about 30 minutes on one (shared) CPU core; ~1M parameters.
    "tiny": dict(d_model=128, n_layers=4, n_heads=4, max_tokens=2560, prefix_tokens=4, dropout=0.1),
    # For a GPU: ~25M parameters.
    "base": dict(d_model=512, n_layers=8, n_heads=8, max_tokens=4096, prefix_tokens=8, dropout=0.1),
}
# What the next token is: a header field, EOS, or a value of one (kind, axis).
ROLE_LOOP, ROLE_DURATION, ROLE_EOS, ROLE_NONE = 0, 1, 2, 3
ROLES = 4 + 3 * len(KINDS)


@dataclass
class AnimationModelConfig:
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    max_tokens: int = 2560
    prefix_tokens: int = 4
    dropout: float = 0.1
    text_dim: int = EMBEDDING_DIM
    bone_features: int = BONE_FEATURES
    vocab_size: int = len(MOTION_TOKENS)

    @classmethod
    def preset(cls, name: str, **overrides) -> AnimationModelConfig:
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> AnimationModelConfig:
        return cls(**data)


@dataclass
class Target:
    """A target as the model sees it: per position of its motion sequence, what the next token
    is (role, bone, key), and its bones' features."""

    layout: MotionLayout
    roles: np.ndarray  # (L,) int64
    groups: np.ndarray  # (L,) int64, -1 where the next token is no bone's value
    keys: np.ndarray  # (L,) int64
    features: np.ndarray  # (G, BONE_FEATURES) float32

    @classmethod
    def of(cls, layout: MotionLayout) -> Target:
        length = layout.sequence_length()
        roles = np.full(length, ROLE_NONE, np.int64)
        groups = np.full(length, -1, np.int64)
        keys = np.zeros(length, np.int64)
        roles[0], roles[1], roles[-2] = ROLE_LOOP, ROLE_DURATION, ROLE_EOS
        for position in range(2, length - 2):  # the input at `position` announces token position + 1
            c, key = divmod(position - 2, KEYS)
            channel = layout.channels[c]
            roles[position] = 4 + 3 * KINDS.index(channel.kind) + channel.axis
            groups[position], keys[position] = channel.group, key
        return cls(layout, roles, groups, keys, layout.features())


class AnimationModel(Decoder):
    def __init__(self, config: AnimationModelConfig):
        super().__init__()
        self.config = c = config
        self.text_proj = nn.Linear(c.text_dim, c.prefix_tokens * c.d_model)
        self.tok_emb = nn.Embedding(c.vocab_size, c.d_model)
        self.pos_emb = nn.Embedding(c.prefix_tokens + c.max_tokens, c.d_model)
        self.role_emb = nn.Embedding(ROLES, c.d_model)
        self.key_emb = nn.Embedding(16, c.d_model)
        self.bone_proj = nn.Sequential(
            nn.Linear(c.bone_features, c.d_model), nn.GELU(), nn.Linear(c.d_model, c.d_model)
        )
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.n_layers))  # type: ignore[arg-type]
        self.ln_f = nn.LayerNorm(c.d_model)
        self.head = Linear(c.d_model, c.vocab_size, bias=False)
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.Embedding):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    nn.init.zeros_(m.bias)

    def _prefix(self, text: torch.Tensor) -> torch.Tensor:
        return self.text_proj(text).view(text.shape[0], self.config.prefix_tokens, self.config.d_model)

    def _embed(self, tokens, roles, groups, keys, features) -> torch.Tensor:
        """Token plus what comes next: (B, T, d). groups index features (B, G, F); -1: none."""
        bones = self.bone_proj(features)  # (B, G, d)
        picked = torch.gather(bones, 1, groups.clamp(min=0).unsqueeze(-1).expand(-1, -1, bones.shape[-1]))
        picked = picked * (groups >= 0).unsqueeze(-1)
        return self.tok_emb(tokens) + self.role_emb(roles) + self.key_emb(keys) + picked

    def forward(self, text, tokens, roles, groups, keys, features, targets=None):
        """Logits (B, T, V) for the token after each of ``tokens``; with targets also the mean loss."""
        if tokens.shape[1] > self.config.max_tokens:
            raise ValueError(
                f"sequence of {tokens.shape[1]} tokens exceeds max_tokens={self.config.max_tokens}"
            )
        x = torch.cat([self._prefix(text), self._embed(tokens, roles, groups, keys, features)], 1)
        logits = self.head(self._run(x)[:, self.config.prefix_tokens :])
        if targets is None:
            return logits, None
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=PAD
        )
        return logits, loss

    @torch.inference_mode()
    def generate_batch(
        self,
        texts: torch.Tensor,
        targets: Sequence[Target],
        temperature: float | Sequence[float] = 0.8,
        top_p: float = 0.95,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        loops: Sequence[bool | None] | None = None,
    ) -> list[tuple[list[int], Motion]]:
        """A motion per row of (B, text_dim) embeddings, each on its target, decoded side by
        side with a KV cache; rows leave the batch when they end. ``loops``: per row, a cycle
        (True), a one-shot (False) or the model's choice (None)."""
        self.eval()
        c = self.config
        n = len(targets)
        generators = generator if isinstance(generator, Sequence) else [generator] * n
        temperatures = temperature if isinstance(temperature, Sequence) else [temperature] * n
        longest = max(t.layout.sequence_length() for t in targets)
        if longest > c.max_tokens:
            raise ValueError(f"a target needs {longest} tokens; this model writes at most {c.max_tokens}")
        device = self.pos_emb.weight.device
        width = max(len(t.features) for t in targets)
        features = torch.zeros(n, width, c.bone_features, device=device)
        for i, t in enumerate(targets):
            features[i, : len(t.features)] = torch.from_numpy(t.features)
        bones = self.bone_proj(features)  # (B, G, d): once per request, not per step
        cond = [
            self.role_emb(torch.from_numpy(t.roles).to(device))
            + self.key_emb(torch.from_numpy(t.keys).to(device))
            + torch.where(
                torch.from_numpy(t.groups >= 0).to(device).unsqueeze(-1),
                bones[i, torch.from_numpy(t.groups).clamp(min=0).to(device)],
                0.0,
            )
            for i, t in enumerate(targets)
        ]
        grammars = [
            MotionGrammar(t.layout, loop) for t, loop in zip(targets, loops or [None] * n, strict=True)
        ]
        # A target fixes its sequence: each step's input (less its token: what comes next, and
        # the position) and the stretch of the vocabulary the grammar allows are looked up, not
        # built. The grammar allows one contiguous stretch at a time (a header field's tokens,
        # the value bins, EOS), so the head computes those logits only and the draw needs no mask.
        positions = self.pos_emb.weight[c.prefix_tokens : c.prefix_tokens + longest]
        inputs = [(cc + positions[: len(cc)]).unbind(0) for cc in cond]  # per row, per position
        spans = [_spans(g.position_masks()) for g in grammars]
        heads: dict[tuple[int, int], torch.Tensor] = {}  # (V_span, d) head weights, transposed
        embedding = self.tok_emb.weight.unbind(0)  # per token
        tokens = [[BOS] for _ in targets]
        x = torch.cat(
            [
                self._prefix(texts.to(device)) + self.pos_emb.weight[: c.prefix_tokens],
                embedding[BOS] + torch.stack([i[0] for i in inputs])[:, None],
            ],
            1,
        )
        step = Decoding(self, n, c.prefix_tokens + longest)
        hidden = step(x)
        rows = list(range(n))
        for at in range(1, longest):  # tokens so far; every row still going has as many
            row_spans = [spans[i][at - 1] for i in rows]
            span = (
                row_spans[0]
                if len(rows) == 1
                else (min(s[0] for s in row_spans), max(s[1] for s in row_spans))
            )
            if span not in heads:
                heads[span] = self.head.weight[span[0] : span[1]].t().contiguous()
            logits = torch.mm(hidden, heads[span]).cpu().numpy()
            going = []
            for b, i in enumerate(rows):
                lo, hi = row_spans[b][0] - span[0], row_spans[b][1] - span[0]
                token = span[0] + lo + sample_logits(logits[b, lo:hi], temperatures[i], top_p, generators[i])
                grammars[i].feed(token)
                tokens[i].append(token)
                if token != EOS:
                    going.append(b)
            if len(going) < len(rows):
                step.keep(torch.tensor(going, device=device, dtype=torch.long))
                rows = [rows[b] for b in going]
                if not rows:
                    break
            if len(rows) == 1:
                i = rows[0]
                x = (embedding[tokens[i][-1]] + inputs[i][at]).view(1, 1, -1)
            else:
                x = torch.stack([embedding[tokens[i][-1]] + inputs[i][at] for i in rows])[:, None]
            hidden = step(x)
        return [(t, g.motion()) for t, g in zip(tokens, grammars, strict=True)]


class Decoding:
    """A decode's blocks and KV cache: ``decoding(x)`` runs inputs x (B, t, d_model) that hold
    their positions and follow the cached ones through the blocks (eval mode) and returns the
    final hidden state of their last position (B, d_model). The arithmetic of Block in fp32,
    arranged for a step of one token, where the time goes in running small torch ops one by one
    rather than in arithmetic (models/animation/README.md, Speed):

    - products by addmm with weights transposed once per decode (F.linear transposes and
      expands them every call), the attention's scale folded into the query weights;
    - attention as two batched matrix products and a softmax over a cache that keeps keys and
      values transposed (head_dim, L): a query's scores and its output are products over
      contiguous rows, and one copy stores a step's keys and values (where
      scaled_dot_product_attention took 15 to 20% longer at 700 to 1,400 positions);
    - GELU on a non-contiguous view: PyTorch sends contiguous fp32 GELU to oneDNN, whose
      per-call setup took 7 us of 8 for 512 values (the ATen kernel: 1.5 us; the two agree to
      within a unit in the last place).
    """

    def __init__(self, model: AnimationModel, rows: int, length: int):
        c = model.config
        device = model.pos_emb.weight.device
        self.heads, self.head_dim = c.n_heads, c.d_model // c.n_heads
        scale = torch.ones(3 * c.d_model, device=device)
        scale[: c.d_model] = self.head_dim**-0.5
        self.layers = []
        for block in model.blocks:
            b = cast(Block, block)
            fc, out = cast(Linear, b.mlp[0]), cast(Linear, b.mlp[2])
            self.layers.append(
                (
                    _norm(b.ln1),
                    (b.attn.qkv.weight * scale[:, None]).t().contiguous(),
                    b.attn.qkv.bias * scale,
                    b.attn.proj.weight.t().contiguous(),
                    b.attn.proj.bias,
                    _norm(b.ln2),
                    fc.weight.t().contiguous(),
                    fc.bias,
                    out.weight.t().contiguous(),
                    out.bias,
                )
            )
        self.final = _norm(model.ln_f)
        # Keys and values, both transposed: (layer, row, head, key or value, head_dim, position).
        shape = (c.n_layers, rows, c.n_heads, 2, self.head_dim, length)
        self._use(torch.empty(shape, device=device))
        self.length = 0  # positions cached

    def _use(self, cache: torch.Tensor) -> None:
        self.cache = cache
        heads = cache.flatten(1, 2)  # (layer, B * H, 2, hd, L)
        # Per layer: the cache (B, H, 2, hd, L) that a step writes; its keys (B * H, hd, L) and
        # values (B * H, L, hd) that a step reads.
        self.layer_cache = list(
            zip(
                cache.unbind(0),
                heads.select(2, 0).unbind(0),
                heads.select(2, 1).transpose(2, 3).unbind(0),
                strict=True,
            )
        )

    def keep(self, rows: torch.Tensor) -> None:
        """Drops every row but ``rows`` (a long tensor of batch indices)."""
        cache = self.cache.new_empty(self.cache.shape[:1] + (len(rows),) + self.cache.shape[2:])
        cache[..., : self.length] = self.cache[:, rows, ..., : self.length]
        self._use(cache)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        heads, hd = self.heads, self.head_dim
        start, end = self.length, self.length + t
        mask = None
        if t > 1:  # position start + i sees the cached ones and itself
            mask = torch.full((t, end), -math.inf, device=x.device).triu(start + 1)
        x = x.reshape(b * t, d)
        # Methods (narrow, select) rather than indexing, torch.layer_norm rather than F's, in-place
        # residual adds: each saves a microsecond or two a call, a tenth of a step in all.
        for layer, (cache, keys, values) in zip(self.layers, self.layer_cache, strict=True):
            norm1, wqkv, bqkv, wproj, bproj, norm2, wfc, bfc, wout, bout = layer
            qkv = torch.addmm(bqkv, torch.layer_norm(x, *norm1), wqkv).view(b, t, 3, heads, hd)
            cache.narrow(4, start, t).copy_(qkv.narrow(2, 1, 2).permute(0, 3, 2, 4, 1))
            q = qkv.select(2, 0).transpose(1, 2).reshape(b * heads, t, hd)
            scores = torch.bmm(q, keys.narrow(2, 0, end))  # (B * H, t, end)
            if mask is not None:
                scores += mask
            y = torch.bmm(torch.softmax(scores, -1), values.narrow(1, 0, end))  # (B * H, t, hd)
            y = y.view(b, heads, t, hd).transpose(1, 2).reshape(b * t, d)
            x = torch.addmm(bproj, y, wproj).add_(x)
            h = torch.addmm(bfc, torch.layer_norm(x, *norm2), wfc)
            # The ATen GELU: a contiguous fp32 input would go to oneDNN (see the docstring).
            h = F.gelu(h.view(-1, 2).t()).t().reshape(h.shape)
            x = torch.addmm(bout, h, wout).add_(x)
        self.length = end
        return torch.layer_norm(x.view(b, t, d).select(1, -1), *self.final)


def _norm(norm: nn.LayerNorm) -> tuple:
    return (norm.normalized_shape, norm.weight, norm.bias, norm.eps)


def _spans(masks: np.ndarray) -> list[tuple[int, int]]:
    """Per row of (positions, vocabulary) bool masks, the (first, past the last) allowed token,
    checked to be all that the row allows."""
    first = masks.argmax(1)
    past = masks.shape[1] - masks[:, ::-1].argmax(1)
    if not (masks.sum(1) == past - first).all():  # a gap, or nothing allowed
        raise ValueError("the grammar does not allow one stretch of the vocabulary at every position")
    return list(zip(first.tolist(), past.tolist(), strict=True))


def batch_inputs(targets: Sequence[Target], sequences: Sequence[list[int]]):
    """(tokens, roles, groups, keys, features, next-token targets) tensors for teacher forcing,
    padded with PAD (targets) and -1 (groups)."""
    width = max(len(s) for s in sequences) - 1
    n = len(sequences)
    tokens = np.full((n, width), PAD, np.int64)
    targets_out = np.full((n, width), PAD, np.int64)
    roles = np.full((n, width), ROLE_NONE, np.int64)
    groups = np.full((n, width), -1, np.int64)
    keys = np.zeros((n, width), np.int64)
    g = max(len(t.features) for t in targets)
    features = np.zeros((n, g, BONE_FEATURES), np.float32)
    for i, (t, s) in enumerate(zip(targets, sequences, strict=True)):
        length = len(s) - 1
        tokens[i, :length], targets_out[i, :length] = s[:-1], s[1:]
        roles[i, :length], groups[i, :length], keys[i, :length] = (
            t.roles[:length],
            t.groups[:length],
            t.keys[:length],
        )
        features[i, : len(t.features)] = t.features
    return tuple(torch.from_numpy(a) for a in (tokens, roles, groups, keys, features, targets_out))


def save_checkpoint(path, model: AnimationModel, extra: dict | None = None, half: bool = False) -> None:
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    torch.save({"model_config": model.config.to_dict(), "state_dict": state, **(extra or {})}, path)


def load_weights(model: AnimationModel, state: dict) -> None:
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})


def load_model(path, device: str = "cpu") -> tuple[AnimationModel, dict]:
    """(model in eval mode, the whole checkpoint dict), in fp32. Decoding (Decoding) computes in
    fp32 whatever the checkpoint stores: at d_model 128 the products are too small for the bytes
    fp16 saves to matter, and fp16's conversions cost more (one torch thread on the 2-core EPYC:
    a 128 -> 512 product took 7.8 us in fp32, 17 us in fp16 with its two casts; fp32 was the
    faster up to d_model 768). Until 2026-11-30 decoding took fp16 products on a CPU."""
    ckpt = torch.load(path, map_location=device, weights_only=False)
    model = AnimationModel(AnimationModelConfig.from_dict(ckpt["model_config"]))
    load_weights(model, ckpt["state_dict"])
    return model.to(device).eval(), ckpt
