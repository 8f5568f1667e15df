"""Text-conditioned decoder-only transformer over n-gon mesh tokens (nanoGPT style, one file).

The prompt's frozen sentence embedding (shared.ml.text_embedding) is projected to a few prefix
vectors that precede the token sequence (BOS ... EOS of shared.ml.mesh_tokenizer). Sampling runs
with a KV cache, temperature and top-p, and is constrained by the tokenizer's MeshGrammar at
every step, so every sample decodes to a valid mesh within the face and token budgets.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol, cast

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from shared.ml.mesh_tokenizer import BOS, EOS, PAD, MeshGrammar, QuantizedMesh, TokenizerConfig, Vocabulary
from shared.ml.text_embedding import EMBEDDING_DIM

PRESETS = {
    # Trains in <= 30 minutes on 2 CPU cores; ~5M parameters.
    "tiny": dict(d_model=256, n_layers=4, n_heads=4, max_tokens=1024, prefix_tokens=4, dropout=0.0),
    # For a GPU: ~95M parameters, 4k-token meshes (about 1,000 quads).
    "base": dict(d_model=768, n_layers=12, n_heads=12, max_tokens=4096, prefix_tokens=8, dropout=0.1),
}


@dataclass
class GeometryModelConfig:
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    max_tokens: int = 1024  # BOS .. EOS
    prefix_tokens: int = 4
    dropout: float = 0.0
    text_dim: int = EMBEDDING_DIM  # the conditioning vector: a prompt's embedding, or more (parts)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    vocab: int | None = None  # another grammar's vocabulary size (layouts); None: the mesh tokenizer's

    @property
    def vocab_size(self) -> int:
        return self.vocab or Vocabulary(self.tokenizer).size

    @classmethod
    def preset(cls, name: str, **overrides) -> GeometryModelConfig:
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> GeometryModelConfig:
        data = dict(data)
        data["tokenizer"] = TokenizerConfig(**data.get("tokenizer", {}))
        return cls(**data)


class KVCache:
    """Every layer's keys and values for up to ``length`` positions of ``batch`` rows, written in
    place: a cache grown by torch.cat copies itself every step, which cost about a tenth of a
    decode step on a 2-core CPU."""

    def __init__(self, config: GeometryModelConfig, batch: int, length: int, device, dtype):
        head_dim = config.d_model // config.n_heads
        shape = (config.n_layers, 2, batch, config.n_heads, length, head_dim)
        self._use(torch.empty(shape, device=device, dtype=dtype))
        self.length = 0  # positions written by the steps before this one

    def _use(self, buffer: torch.Tensor) -> None:
        self.buffer = buffer
        self.keys, self.values = buffer[:, 0].unbind(0), buffer[:, 1].unbind(0)  # (B, H, length, hd) views

    def extend(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stores this step's (B, H, t, head_dim) keys and values; returns the layer's keys and
        values so far. ``advance`` moves past them once every layer has stored its own."""
        t = k.shape[2]
        self.keys[layer].narrow(2, self.length, t).copy_(k)
        self.values[layer].narrow(2, self.length, t).copy_(v)
        end = self.length + t
        return self.keys[layer].narrow(2, 0, end), self.values[layer].narrow(2, 0, end)

    def advance(self, steps: int) -> None:
        self.length += steps

    def keep(self, rows: torch.Tensor) -> None:
        """Drops every row but ``rows`` (a long tensor of batch indices), copying what is written."""
        buffer = self.buffer.new_empty(self.buffer.shape[:2] + (len(rows),) + self.buffer.shape[3:])
        buffer[:, :, :, :, : self.length] = self.buffer[:, :, rows, :, : self.length]
        self._use(buffer)


class Linear(nn.Linear):
    """nn.Linear that can multiply by half-precision weights when it runs without autograd on a CPU.

    Decoding one row, a step reads every weight from memory once, and that is where its time
    goes: fp16 weights halve the bytes (1.8x faster per mesh on a 2-core EPYC, make
    bench-generate). Shipped checkpoints store fp16 weights anyway. With ``half_precision`` on,
    one or two rows take the fp16 product. More rows take the fp32 product, faster there, of the
    same fp16-rounded inputs and weights, rounded to fp16 too. So a row's sample seldom depends on
    how many rows share its steps: only where the two products round an output apart (about 1 in
    700, by one fp16 step) and that tips a draw.
    """

    half_precision = False
    _half: tuple | None = None  # (key of the weights it was made from, fp16 weights, rounded fp32 ones)

    def forward(self, x: torch.Tensor, outputs: slice | None = None) -> torch.Tensor:
        """The layer's output features ``outputs`` (all by default) for inputs x."""
        return self.product(outputs)(x)

    def product(self, outputs: slice | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
        """x -> the layer's output features ``outputs`` (all by default), with the weights and
        mode (fp16 or not) as they are now: a decode takes its layers' products once for all its
        tokens (Block.prepared)."""
        weight: torch.Tensor = self.weight
        bias: torch.Tensor | None = self.bias
        if not (self.half_precision and weight.device.type == "cpu" and not torch.is_grad_enabled()):
            if outputs is not None:
                weight, bias = weight[outputs], None if bias is None else bias[outputs]
            return lambda x: F.linear(x, weight, bias)
        half, rounded = self._half_weights()
        if outputs is not None:
            half, rounded = [p[outputs] for p in half], [p[outputs] for p in rounded]

        def product(x: torch.Tensor) -> torch.Tensor:
            if x.numel() <= 2 * x.shape[-1]:  # one or two rows
                return F.linear(x.half(), *half).float()
            return F.linear(x.half().float(), *rounded).half().float()

        return product

    def _half_weights(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        params = [p for p in (self.weight, self.bias) if p is not None]
        key = [(p.data_ptr(), p._version) for p in params]  # an optimizer step or a load moves _version
        if self._half is None or self._half[0] != key:
            half = [p.detach().half() for p in params]
            rounded = [
                p if torch.equal(h.float(), p) else h.float() for h, p in zip(half, params, strict=True)
            ]
            self._half = (key, half, rounded)
        return self._half[1], self._half[2]


class SelfAttention(nn.Module):
    """The attention's weights and settings; Block computes with them."""

    def __init__(self, c: GeometryModelConfig):
        super().__init__()
        self.n_heads = c.n_heads
        self.qkv = Linear(c.d_model, 3 * c.d_model)
        self.proj = Linear(c.d_model, c.d_model)
        self.dropout = c.dropout


BlockRun = Callable[[torch.Tensor, KVCache | None, int], torch.Tensor]


class Block(nn.Module):
    def __init__(self, c: GeometryModelConfig):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(c.d_model), nn.LayerNorm(c.d_model)
        self.attn = SelfAttention(c)
        self.mlp = nn.Sequential(
            Linear(c.d_model, 4 * c.d_model),
            nn.GELU(),
            Linear(4 * c.d_model, c.d_model),
            nn.Dropout(c.dropout),
        )

    def forward(self, x, cache: KVCache | None = None, layer: int = 0):
        return self.prepared()(x, cache, layer)

    def prepared(self) -> BlockRun:
        """(x, cache, layer) -> the block's output, with its weights and mode as they are now.
        Decoding takes each block's once and runs it every token: at d_model 128 a token's torch
        ops cost less than the Python around them, and fetching the weights through the
        submodules every token (nn.Module attribute lookups and calls, Linear's fp16 checks) was
        a fifth of a step's instructions (callgrind, the animation model)."""
        ln1, ln2, attn = self.ln1, self.ln2, self.attn
        norm1 = (ln1.normalized_shape, ln1.weight, ln1.bias, ln1.eps)
        norm2 = (ln2.normalized_shape, ln2.weight, ln2.bias, ln2.eps)
        qkv, proj, heads = attn.qkv.product(), attn.proj.product(), attn.n_heads
        # mlp is (Linear, GELU, Linear, Dropout) for the state dict's names; the GELU is F.gelu's
        # default, the Dropout's rate the attention's.
        fc, out = cast(Linear, self.mlp[0]).product(), cast(Linear, self.mlp[2]).product()
        dropout = attn.dropout if self.training else 0.0

        def run(x: torch.Tensor, cache: KVCache | None, layer: int) -> torch.Tensor:
            b, t, d = x.shape
            h = F.layer_norm(x, *norm1)
            q, k, v = qkv(h).view(b, t, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
            if cache is not None:
                k, v = cache.extend(layer, k, v)
            # A query after a prefill may see every cached key; a prefill (t > 1) is plain causal.
            y = F.scaled_dot_product_attention(q, k, v, is_causal=t > 1, dropout_p=dropout)
            x = x + proj(y.transpose(1, 2).reshape(b, t, d))
            y = out(F.gelu(fc(F.layer_norm(x, *norm2))))
            return x + (F.dropout(y, dropout) if dropout else y)

        return run


def prepared_blocks(blocks: Iterable[nn.Module]) -> list[BlockRun]:
    """Each Block's prepared run (Block.prepared), in order."""
    return [cast(Block, block).prepared() for block in blocks]


class Decoder(nn.Module):
    """What the sequence models (geometry, material, animation) share: a stack of Blocks over
    embedded inputs with learned positions, run with or without a KV cache. A subclass sets
    ``pos_emb``, ``drop``, ``blocks`` and ``ln_f`` and embeds its own inputs."""

    pos_emb: nn.Embedding
    drop: nn.Dropout
    blocks: nn.ModuleList
    ln_f: nn.LayerNorm

    def use_half_precision(self, enabled: bool = True) -> None:
        """Inference on a CPU with fp16 weights (see Linear); the loaders turn it on."""
        for m in self.modules():
            if isinstance(m, Linear):
                m.half_precision = enabled

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _run(
        self, x: torch.Tensor, cache: KVCache | None = None, blocks: Sequence[BlockRun] | None = None
    ) -> torch.Tensor:
        """Final hidden states (B, t, d_model) of embedded inputs that follow the cached positions;
        ``blocks``: the blocks' prepared runs, which a decode takes once for all its steps."""
        start = cache.length if cache is not None else 0
        x = self.drop(x + self.pos_emb.weight[start : start + x.shape[1]])
        for i, run in enumerate(blocks or prepared_blocks(self.blocks)):
            x = run(x, cache, i)
        if cache is not None:
            cache.advance(x.shape[1])
        return self.ln_f(x)


class GeometryModel(Decoder):
    def __init__(self, config: GeometryModelConfig):
        super().__init__()
        self.config = c = config
        self.text_proj = nn.Linear(c.text_dim, c.prefix_tokens * c.d_model)
        self.tok_emb = nn.Embedding(c.vocab_size, c.d_model)
        self.pos_emb = nn.Embedding(c.prefix_tokens + c.max_tokens, c.d_model)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.n_layers))
        self.ln_f = nn.LayerNorm(c.d_model)
        self.head = Linear(c.d_model, c.vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight  # tied
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight") and "text" not in name or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * c.n_layers))

    @staticmethod
    def _init(m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, 0.02)

    def _prefix(self, text: torch.Tensor) -> torch.Tensor:
        return self.text_proj(text).view(text.shape[0], self.config.prefix_tokens, self.config.d_model)

    def forward(self, text: torch.Tensor, tokens: torch.Tensor, targets: torch.Tensor | None = None):
        """Logits (B, T, V) for the token after each of ``tokens``; with targets also the mean loss."""
        if tokens.shape[1] > self.config.max_tokens:
            raise ValueError(
                f"sequence of {tokens.shape[1]} tokens exceeds max_tokens={self.config.max_tokens}"
            )
        x = torch.cat([self._prefix(text), self.tok_emb(tokens)], 1)
        logits = self.head(self._run(x)[:, self.config.prefix_tokens :])
        if targets is None:
            return logits, None
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=PAD
        )
        return logits, loss

    def generate(
        self,
        text: torch.Tensor,
        face_budget: int = 200,
        temperature: float = 0.8,
        top_p: float = 0.95,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
        min_faces: int = 1,
        deadline_s: float | None = None,
    ) -> tuple[list[int], QuantizedMesh]:
        """One grammar-constrained sample for a (text_dim,) embedding: (tokens, canonical mesh)."""
        return self.generate_batch(
            text.view(1, -1), face_budget, temperature, top_p, generator, use_cache, min_faces, deadline_s
        )[0]

    def generate_batch(
        self,
        texts: torch.Tensor,
        face_budget: int = 200,
        temperature: float = 0.8,
        top_p: float = 0.95,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        use_cache: bool = True,
        min_faces: int = 1,
        deadline_s: float | None = None,
    ) -> list[tuple[list[int], QuantizedMesh]]:
        """A sample per row of (B, text_dim) embeddings, decoded side by side (see decode_batch)."""
        c = self.config
        grammars = [
            MeshGrammar(c.tokenizer, face_budget=face_budget, max_tokens=c.max_tokens, min_faces=min_faces)
            for _ in range(texts.shape[0])
        ]
        tokens = self.decode_batch(texts, grammars, temperature, top_p, generator, use_cache, deadline_s)
        return [(t, g.mesh()) for t, g in zip(tokens, grammars, strict=True)]

    @torch.inference_mode()
    def decode_batch(
        self,
        texts: torch.Tensor,
        grammars: Sequence[Grammar],
        temperature: float = 0.8,
        top_p: float = 0.95,
        generator: torch.Generator | Sequence[torch.Generator | None] | None = None,
        use_cache: bool = True,
        deadline_s: float | None = None,
        guidance: float = 1.0,
    ) -> list[list[int]]:
        """The tokens (BOS ...) of a sample per row of (B, text_dim) conditioning vectors, each
        constrained by its row's grammar (fed as it goes), decoded side by side: at batch 1 the
        time goes in per-token overhead, which B rows share. Rows leave the batch (and its KV
        cache) when their grammar is done. With a generator per row, a row's sample is the one it
        gets alone (up to rounding in the batched matrix products); one generator serves the rows
        in turn. Decoding past ``deadline_s`` seconds raises GenerationTimeout, so a slow request
        frees the model.

        ``guidance`` other than 1 is classifier-free guidance, for a model trained with condition
        dropout: every row is also run with a zero condition, and a step draws from the logits
        ``null + guidance * (conditioned - null)``, so samples follow their condition more closely
        than the model's own distribution does (at the cost of variety)."""
        started = time.monotonic()
        self.eval()
        c = self.config
        generators = generator if isinstance(generator, Sequence) else [generator] * texts.shape[0]
        for name, count in (("generators", len(generators)), ("grammars", len(grammars))):
            if count != texts.shape[0]:
                raise ValueError(f"{count} {name} for {texts.shape[0]} rows")

        device = self.pos_emb.weight.device
        tokens = [[BOS] for _ in grammars]
        guided = guidance != 1.0
        twins = 2 if guided else 1  # rows run per sample
        conditions = texts.to(device)
        if guided:  # rows 0..n-1 conditioned, rows n..2n-1 their unconditioned twins
            conditions = torch.cat([conditions, torch.zeros_like(conditions)])
        prefix = self._prefix(conditions)
        x = torch.cat([prefix, self.tok_emb(torch.full((len(conditions), 1), BOS, device=device))], 1)
        cache = None
        if use_cache:
            cache = KVCache(c, len(conditions), c.prefix_tokens + c.max_tokens, device, x.dtype)
        blocks = prepared_blocks(self.blocks)
        hidden = self._run(x, cache, blocks)
        rows = list(range(len(grammars)))  # the samples still being written, in batch order
        while rows:
            if deadline_s is not None and time.monotonic() - started > deadline_s:
                raise GenerationTimeout(
                    f"decoding passed its deadline of {deadline_s:g} s after {len(tokens[rows[0]])} tokens"
                )
            masks = np.stack([grammars[i].allowed_mask() for i in rows])
            # The grammar allows one contiguous stretch of the vocabulary at a time (structure
            # tokens, or corners): the output head needs only those rows of its weight.
            anywhere = masks.any(0)
            lo, hi = int(anywhere.argmax()), len(anywhere) - int(anywhere[::-1].argmax())
            logits = self.head(hidden[:, -1], slice(lo, hi)).float()
            if guided:
                conditioned, null = logits[: len(rows)], logits[len(rows) :]
                logits = null + guidance * (conditioned - null)
            allowed = torch.from_numpy(masks[:, lo:hi]).to(device)
            going = []
            for b, i in enumerate(rows):
                token = lo + sample_token(logits[b], allowed[b], temperature, top_p, generators[i])
                grammars[i].feed(token)
                tokens[i].append(token)
                if token != EOS and not grammars[i].done:
                    going.append(b)
            if len(going) < len(rows):
                kept = going + [len(rows) + b for b in going] if guided else going
                keep = torch.tensor(kept, device=device, dtype=torch.long)
                if cache is not None:
                    cache.keep(keep)
                else:  # the prefix is re-run every step only without a cache
                    prefix = prefix[keep]
                rows = [rows[b] for b in going]
                if not rows:
                    break
            if cache is not None:
                step = torch.tensor([[tokens[i][-1]] for i in rows] * twins, device=device)
                hidden = self._run(self.tok_emb(step), cache, blocks)
            else:
                seq = torch.tensor([tokens[i] for i in rows] * twins, device=device)
                hidden = self._run(torch.cat([prefix, self.tok_emb(seq)], 1), blocks=blocks)
        return tokens


class Grammar(Protocol):
    """What decode_batch needs of a grammar (MeshGrammar, LayoutGrammar)."""

    done: bool

    def allowed_mask(self) -> np.ndarray: ...

    def feed(self, token: int) -> None: ...


class GenerationTimeout(TimeoutError):
    """Decoding ran past the request's deadline."""


# Below this a tempered softmax is the argmax to float32 precision; dividing by less only
# overflows (a temperature of 1e-40 turned every probability into NaN).
MIN_TEMPERATURE = 1e-3
# Above this the tempered distribution is uniform to float32 precision (and inf / inf is NaN).
MAX_TEMPERATURE = 1e6
# Top-p rejection draws before the exact (sorting) fallback; a distribution that keeps at least
# top_p of its mass accepts within a few draws, so the fallback only serves odd top_p values.
MAX_REJECTION_DRAWS = 64


def sample_token(logits, allowed, temperature: float, top_p: float, generator=None) -> int:
    """Index of a token drawn from the allowed ones (a bool mask over logits); temperature 0 (or
    below MIN_TEMPERATURE, or NaN) is greedy. Top-p keeps the most likely tokens until their
    probability reaches top_p. NaN logits count as impossible; when no allowed token has a usable
    logit, every allowed token is equally likely. Always returns an allowed token, promptly."""
    if not bool(allowed.any()):
        raise ValueError("no token is allowed: the grammar left nothing to sample")
    logits = torch.nan_to_num(logits.float(), nan=-math.inf, posinf=torch.finfo(torch.float32).max)
    logits = logits.masked_fill(~allowed, -math.inf)
    best = logits.max()
    if not torch.isfinite(best):
        logits = torch.zeros_like(logits).masked_fill(~allowed, -math.inf)
        best = logits.new_zeros(())
    if not temperature >= MIN_TEMPERATURE:  # also NaN
        return int(logits.argmax())
    # Subtracting the best logit first keeps every quotient finite or -inf, never NaN.
    probs = torch.softmax((logits - best) / min(temperature, MAX_TEMPERATURE), -1)
    cumulative = probs.cumsum(0)
    # Top-p by rejection: a draw from all allowed tokens stands if the tokens more likely than it
    # hold less than top_p, so the draws that stand follow the top-p distribution without
    # sorting the thousands of tokens a corner allows. The kept tokens hold at least top_p, so
    # this takes at most 1 / top_p draws on average.
    for _ in range(MAX_REJECTION_DRAWS):
        draw = torch.rand((), device=probs.device, generator=generator) * cumulative[-1]
        token = int(torch.searchsorted(cumulative, draw, right=True).clamp(max=len(probs) - 1))
        p = probs[token]
        if p > 0 and (top_p >= 1.0 or probs[probs > p].sum() < top_p):
            return token
    # The same top-p distribution, exactly: the kept tokens are those at least as likely as the
    # least likely one whose more likely tokens hold less than top_p (at least the likeliest).
    ordered = probs.sort(descending=True).values
    more_likely = ordered.cumsum(0) - ordered
    threshold = ordered[max(int((more_likely < top_p).sum()), 1) - 1]
    kept = probs.masked_fill(probs < threshold, 0.0)
    return int(torch.multinomial(kept, 1, generator=generator))


def sample_logits(logits: np.ndarray, temperature: float, top_p: float, generator=None) -> int:
    """sample_token where every token is allowed, for a decoder whose grammar allows a stretch of
    the vocabulary at a time (its head computes only those logits): an index of (V,) float32
    logits, drawn from the same top-p distribution by the same rejection, in numpy. On a few
    hundred logits a numpy call costs a fraction of a torch op: this takes about a dozen and a
    generator draw a token, where sample_token takes about 20 torch ops. The same generator gives
    other samples than sample_token does (other rounding, and a lone token takes no draw). Odd
    logits (NaN, infinite, or spread past 1e30) go to sample_token."""
    z = np.asarray(logits, dtype=np.float32)
    if len(z) == 0:
        raise ValueError("no token is allowed: the grammar left nothing to sample")
    if len(z) == 1:
        return 0
    best = float(z.max())
    if not best - float(z.min()) < 1e30:  # a NaN, an infinite logit, or a span that would overflow
        everything = torch.ones(len(z), dtype=torch.bool)
        return sample_token(torch.from_numpy(z.copy()), everything, temperature, top_p, generator)
    if not temperature >= MIN_TEMPERATURE:  # also NaN
        return int(z.argmax())
    # Weights in proportion to the tempered probabilities, the likeliest exactly 1.
    weights = np.exp((z - best) / np.float32(min(temperature, MAX_TEMPERATURE)))
    cumulative = weights.cumsum()
    total = float(cumulative[-1])
    for _ in range(MAX_REJECTION_DRAWS):  # as sample_token; the likeliest token always stands
        draw = float(torch.rand((), generator=generator)) * total
        token = min(int(cumulative.searchsorted(draw, side="right")), len(z) - 1)
        weight = weights[token]
        if weight >= 1.0 or top_p >= 1.0 or weight > 0 and weights[weights > weight].sum() < top_p * total:
            return token
    ordered = np.sort(weights)[::-1]  # the exact top-p distribution, as sample_token's fallback
    more_likely = ordered.cumsum() - ordered
    kept = weights >= ordered[max(int((more_likely < top_p * total).sum()), 1) - 1]
    cumulative = np.where(kept, weights, np.float32(0.0)).cumsum()
    draw = float(torch.rand((), generator=generator)) * float(cumulative[-1])
    return min(int(cumulative.searchsorted(draw, side="right")), len(z) - 1)


def model_state(model: GeometryModel, half: bool = False) -> dict:
    """A model's config and weights as a dict (fp16 weights with half)."""
    # head.weight is tok_emb.weight (tied): stored once, re-tied by load_weights.
    state = {
        k: (v.half() if half and v.is_floating_point() else v)
        for k, v in model.state_dict().items()
        if k != "head.weight"
    }
    return {"model_config": model.config.to_dict(), "state_dict": state}


def save_checkpoint(path, model: GeometryModel, extra: dict | None = None, half: bool = False) -> None:
    torch.save({**model_state(model, half), **(extra or {})}, path)


def load_weights(model: GeometryModel, state: dict) -> None:
    """Loads save_checkpoint's weights (fp16 or fp32) into a model, re-tying the output head."""
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict({**state, "head.weight": state["tok_emb.weight"]})


def model_from_state(data: dict, device: str = "cpu", half_precision: bool = True) -> GeometryModel:
    """The model (eval mode) of model_state's dict; on a CPU it decodes with fp16 weights unless
    half_precision is off."""
    model = GeometryModel(GeometryModelConfig.from_dict(data["model_config"]))
    load_weights(model, data["state_dict"])
    model.use_half_precision(half_precision)
    return model.to(device).eval()


def load_model(path, device: str = "cpu", half_precision: bool = True) -> tuple[GeometryModel, dict]:
    """(model in eval mode, the whole checkpoint dict) from save_checkpoint's file."""
    ckpt = torch.load(path, map_location=device, weights_only=False)
    return model_from_state(ckpt, device, half_precision), ckpt


def to_tensor(tokens: list[list[int]]) -> torch.Tensor:
    """Pads token sequences with PAD into a (B, T) long tensor."""
    width = max(len(t) for t in tokens)
    out = np.full((len(tokens), width), PAD, dtype=np.int64)
    for i, t in enumerate(tokens):
        out[i, : len(t)] = t
    return torch.from_numpy(out)
