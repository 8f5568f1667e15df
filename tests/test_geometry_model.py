"""Geometry model and trainer: constrained sampling validity, KV cache, training, checkpoint/resume, data."""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict

import numpy as np
import pytest
import torch

from services.trainer.geometry import (
    TokenSource,
    TrainConfig,
    _lr,
    augment,
    cache_caption_embeddings,
    export_model,
    load_items,
    train,
)
from services.trainer.geometry_prompt_sheet import PROMPT_SHEET
from shared.ml.datasets import DatasetError, dataset_version, export_dataset, iter_split, open_dataset
from shared.ml.geometry_model import (
    GeometryModel,
    GeometryModelConfig,
    KVCache,
    load_model,
    sample_logits,
    sample_token,
)
from shared.ml.mesh_tokenizer import EOS, TokenizerConfig, decode
from shared.ml.synthetic_meshes import synthetic_items
from shared.ml.text_embedding import default_cache_dir
from tests.geometry_helpers import write_dataset

SMALL = {"d_model": 64, "n_layers": 2, "n_heads": 2, "max_tokens": 384, "prefix_tokens": 2}


def small_model(seed: int = 0, **overrides) -> GeometryModel:
    torch.manual_seed(seed)
    return GeometryModel(GeometryModelConfig.preset("tiny", **{**SMALL, **overrides}))


def test_untrained_model_samples_only_valid_meshes_within_budgets():
    model = small_model(max_tokens=120)
    generator = torch.Generator().manual_seed(0)
    for k in range(12):
        budget = 1 + k % 5
        tokens, mesh = model.generate(
            torch.randn(384), face_budget=budget, temperature=1.5, top_p=1.0, generator=generator
        )
        assert len(tokens) <= 120
        decoded = decode(tokens, model.config.tokenizer)  # raises if the grammar was broken
        assert 1 <= len(decoded.faces) <= budget
        assert all(len(set(f)) == len(f) >= 3 for f in decoded.faces)
        assert len(mesh.faces) == len(decoded.faces)


def test_kv_cache_gives_the_same_tokens_as_full_recomputation():
    model = small_model(1)
    text = torch.randn(384)
    cached, _ = model.generate(text, face_budget=4, temperature=0, generator=torch.Generator().manual_seed(0))
    full, _ = model.generate(text, face_budget=4, temperature=0, use_cache=False)
    assert cached == full


def test_batched_generation_gives_each_row_its_own_valid_sample():
    model = small_model(3, max_tokens=160)
    texts = torch.randn(4, 384)
    sampled = model.generate_batch(
        texts, face_budget=5, temperature=1.5, top_p=1.0, generator=torch.Generator().manual_seed(0)
    )
    assert len({len(tokens) for tokens, _ in sampled}) > 1  # rows ended apart and left the batch
    for tokens, mesh in sampled:
        assert tokens[-1] == EOS and decode(tokens, model.config.tokenizer).faces == mesh.faces
        assert 1 <= len(mesh.faces) <= 5
    seeded = model.generate_batch(
        texts, face_budget=5, temperature=1.5, generator=[torch.Generator().manual_seed(s) for s in range(4)]
    )
    alone_seeded = [
        model.generate(t, face_budget=5, temperature=1.5, generator=torch.Generator().manual_seed(s))[0]
        for s, t in enumerate(texts)
    ]
    assert [t for t, _ in seeded] == alone_seeded  # a generator per row: each row's own sample
    with pytest.raises(ValueError, match="2 generators for 4 rows"):
        model.generate_batch(texts, generator=[torch.Generator(), torch.Generator()])
    greedy = model.generate_batch(texts, face_budget=5, temperature=0)
    recomputed = model.generate_batch(texts, face_budget=5, temperature=0, use_cache=False)
    alone = [model.generate(t, face_budget=5, temperature=0)[0] for t in texts]
    assert [t for t, _ in greedy] == [t for t, _ in recomputed] == alone


def test_guided_decoding_draws_from_the_guided_logits_of_each_row():
    """Classifier-free guidance, checked against the formula step by step: each row alone, its
    conditioned and unconditioned (zero) logits recomputed over the whole sequence, greedy on
    null + w * (conditioned - null) within the grammar. Rows end apart, so twins leave the cache
    together; the cached and recomputed decodes agree."""
    from shared.ml.mesh_tokenizer import BOS, MeshGrammar

    model = small_model(5, max_tokens=120).eval()
    texts, budgets, w = torch.randn(3, 384), [2, 4, 3], 2.5

    def grammars():
        return [MeshGrammar(model.config.tokenizer, face_budget=b, max_tokens=120) for b in budgets]

    expected = []
    for text, grammar in zip(texts, grammars(), strict=True):
        tokens = [BOS]
        while tokens[-1] != EOS and not grammar.done:
            seq = torch.tensor([tokens])
            with torch.no_grad():
                conditioned = model(text.view(1, -1), seq)[0][0, -1]
                null = model(torch.zeros(1, 384), seq)[0][0, -1]
            guided = (null + w * (conditioned - null)).masked_fill(
                ~torch.from_numpy(grammar.allowed_mask().copy()), -float("inf")
            )
            tokens.append(int(guided.argmax()))
            grammar.feed(tokens[-1])
        expected.append(tokens)
    assert len({len(t) for t in expected}) > 1  # the rows end apart
    cached = model.decode_batch(texts, grammars(), temperature=0, guidance=w)
    recomputed = model.decode_batch(texts, grammars(), temperature=0, guidance=w, use_cache=False)
    assert cached == recomputed == expected
    plain = model.decode_batch(texts, grammars(), temperature=0)
    assert plain == model.decode_batch(texts, grammars(), temperature=0, guidance=1.0)
    assert plain != expected  # guidance changed what was written


def test_condition_dropout_zeroes_some_training_rows_and_no_evaluation_row(tmp_path):
    source = TokenSource(synthetic_items(60), GeometryModelConfig.preset("tiny", **SMALL), tmp_path)
    rng = np.random.default_rng(0)
    config = TrainConfig(batch_tokens=4096, condition_dropout=0.5)
    texts = torch.cat([source.batch(rng, True, config)[0] for _ in range(20)])
    zeroed = float((texts.abs().sum(1) == 0).float().mean())
    assert 0.35 < zeroed < 0.65
    held = torch.cat([source.batch(rng, False, config)[0] for _ in range(5)])
    assert bool((held.abs().sum(1) > 0).all())  # val batches keep their prompts
    with pytest.raises(ValueError, match="condition_dropout must be in"):
        train(TrainConfig(run_dir=str(tmp_path / "run"), max_steps=1, condition_dropout=1.0))


def test_half_precision_inference_follows_the_fp32_model_and_its_weight_updates():
    """Both half-precision products (one row, and many) stay within rounding of fp32 and of each
    other. Compared by distribution, not by samples: where they round apart differs by CPU."""
    model = small_model(4)
    c = model.config
    text, tokens = torch.randn(1, 384), torch.randint(1, 200, (1, 40))

    def kl(p, q):
        return float((p.exp() * (p - q)).sum(-1).max())

    @torch.no_grad()
    def teacher_forced():  # 42 rows at once
        return model(text, tokens)[0][0].log_softmax(-1)

    @torch.no_grad()
    def decoded_one_row_at_a_time():
        cache = KVCache(c, 1, c.prefix_tokens + c.max_tokens, "cpu", torch.float32)
        hidden = [model._run(torch.cat([model._prefix(text), model.tok_emb(tokens[:, :1])], 1), cache)]
        hidden += [model._run(model.tok_emb(tokens[:, t : t + 1]), cache) for t in range(1, tokens.shape[1])]
        return torch.cat([model.head(h[:, -1]) for h in hidden]).log_softmax(-1)

    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    for _ in range(2):  # the second round after a weight update: the fp16 copies must follow it
        exact = teacher_forced()
        model.use_half_precision(True)
        many_rows, one_row = teacher_forced(), decoded_one_row_at_a_time()
        assert 0 < kl(exact, many_rows) < 1e-4 and 0 < kl(exact, one_row) < 1e-4
        assert kl(many_rows, one_row) < 1e-4
        loss = model(text, tokens, tokens)[1]  # autograd on: fp32 weights, gradients as ever
        model.use_half_precision(False)
        assert torch.equal(loss, model(text, tokens, tokens)[1])
        assert torch.allclose(decoded_one_row_at_a_time(), exact, atol=1e-4)  # off: fp32 again
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    generator = torch.Generator().manual_seed(0)
    model.use_half_precision(True)
    for _ in range(3):  # decoding with fp16 weights still keeps to the grammar
        tokens_out, mesh = model.generate(torch.randn(384), face_budget=4, generator=generator)
        assert decode(tokens_out, model.config.tokenizer).faces == mesh.faces


def test_min_faces_holds_back_eos():
    model = small_model(2)
    _, mesh = model.generate(
        torch.randn(384), face_budget=6, min_faces=6, generator=torch.Generator().manual_seed(1)
    )
    assert len(mesh.faces) == 6  # and none dropped as a duplicate: the grammar forbids repeats


def test_sampling_respects_the_allowed_mask_and_top_p():
    logits = torch.tensor([5.0, 4.0, 0.0, -1.0])
    allowed = torch.tensor([False, True, True, True])
    draws = {sample_token(logits, allowed, 1.0, 0.5, torch.Generator().manual_seed(s)) for s in range(30)}
    assert draws == {1}  # token 0 is masked; top-p 0.5 keeps only the most likely allowed token
    assert sample_token(logits, allowed, 0.0, 1.0) == 1


def test_sampling_draws_in_proportion_to_the_tempered_probabilities():
    logits = torch.tensor([1.0, 0.0, 2.0, -0.5, 9.0])
    allowed = torch.tensor([True, True, True, True, False])
    generator = torch.Generator().manual_seed(0)
    draws = [sample_token(logits, allowed, 2.0, 1.0, generator) for _ in range(4000)]
    expected = torch.softmax(logits[:4] / 2.0, 0).numpy()
    assert np.allclose(np.bincount(draws, minlength=4) / len(draws), expected, atol=0.03)


def test_top_p_keeps_the_likeliest_tokens_of_a_flat_distribution():
    # 1,000 nearly equally likely tokens, most likely first: top-p 0.5 keeps about the first 500.
    logits, allowed = -torch.arange(1000) * 1e-3, torch.ones(1000, dtype=torch.bool)
    generator = torch.Generator().manual_seed(0)
    draws = [sample_token(logits, allowed, 1.0, 0.5, generator) for _ in range(300)]
    assert len(set(draws)) > 150 and max(draws) < 400


@pytest.mark.timeout(10)  # the old top-p rejection loop never returned on these
@pytest.mark.parametrize("temperature", [1e-40, 1e-300, 5e-324, float("nan"), float("inf"), 1e30])
def test_absurd_temperatures_return_an_allowed_token_promptly(temperature):
    logits = torch.tensor([5.0, 4.0, 0.0, -1.0, 3.0])
    allowed = torch.tensor([False, True, True, True, True])
    for top_p in (0.05, 0.9, 1.0):
        token = sample_token(logits, allowed, temperature, top_p, torch.Generator().manual_seed(0))
        assert allowed[token]
    if temperature < 1e-3:  # vanishing temperature: the likeliest allowed token, as greedy
        assert sample_token(logits, allowed, temperature, 0.9) == 1


@pytest.mark.timeout(10)
def test_nan_and_infinite_logits_give_an_allowed_token_promptly():
    allowed = torch.tensor([True, True, False, True])
    generator = torch.Generator().manual_seed(0)
    nan = float("nan")
    cases = {
        "all nan": torch.full((4,), nan),
        "some nan": torch.tensor([nan, 1.0, 9.0, nan]),
        "plus inf": torch.tensor([0.0, float("inf"), float("inf"), 1.0]),
        "all minus inf": torch.full((4,), float("-inf")),
        "huge": torch.tensor([3e38, -3e38, 3e38, 1.0]),
    }
    for name, logits in cases.items():
        for temperature in (0.0, 1e-40, 0.7, 1.0):
            token = sample_token(logits, allowed, temperature, 0.9, generator)
            assert allowed[token], (name, temperature, token)
    # a NaN logit is never chosen over a finite one, and +inf wins outright
    assert sample_token(cases["some nan"], allowed, 1.0, 1.0, generator) == 1
    assert sample_token(cases["plus inf"], allowed, 1.0, 1.0, generator) == 1
    with pytest.raises(ValueError, match="no token is allowed"):
        sample_token(torch.zeros(4), torch.zeros(4, dtype=torch.bool), 1.0, 0.9)


def test_decoding_past_its_deadline_stops_with_a_clear_error():
    from shared.ml.geometry_model import GenerationTimeout

    model = small_model(2)
    with pytest.raises(GenerationTimeout, match="passed its deadline of 0 s after 1 tokens"):
        model.generate(torch.randn(384), face_budget=4, deadline_s=0.0)
    model.generate(torch.randn(384), face_budget=4, deadline_s=60.0)  # time enough: a mesh


def test_bounded_rejection_falls_back_to_the_exact_top_p_distribution(monkeypatch):
    """With no rejection draws every sample comes from the exact fallback: the top-p
    distribution (tokens 0..2 hold 0.9 >= 0.85 of the mass, renormalised), ties kept together."""
    import shared.ml.geometry_model as geometry_model

    monkeypatch.setattr(geometry_model, "MAX_REJECTION_DRAWS", 0)
    probs = torch.tensor([0.4, 0.3, 0.2, 0.06, 0.04])
    logits, allowed = probs.log(), torch.ones(5, dtype=torch.bool)
    generator = torch.Generator().manual_seed(0)
    draws = [sample_token(logits, allowed, 1.0, 0.85, generator) for _ in range(4000)]
    expected = np.array([0.4, 0.3, 0.2, 0.0, 0.0]) / 0.9
    assert np.allclose(np.bincount(draws, minlength=5) / len(draws), expected, atol=0.03)
    ties = torch.tensor([0.3, 0.3, 0.3, 0.1]).log()  # top-p 0.5 is reached inside the tie
    draws = [sample_token(ties, allowed[:4], 1.0, 0.5, generator) for _ in range(600)]
    assert set(draws) == {0, 1, 2}


def test_sample_logits_draws_from_the_top_p_distribution_of_sample_token():
    """sample_logits (numpy, every token allowed) keeps sample_token's distribution: tempered
    probabilities, top-p keeping the likeliest tokens (ties together), also through the exact
    fallback when rejection gives up."""
    import shared.ml.geometry_model as geometry_model

    generator = torch.Generator().manual_seed(0)
    logits = np.array([1.0, 0.0, 2.0, -0.5], dtype=np.float32)
    draws = [sample_logits(logits, 2.0, 1.0, generator) for _ in range(4000)]
    expected = torch.softmax(torch.from_numpy(logits) / 2.0, 0).numpy()
    assert np.allclose(np.bincount(draws, minlength=4) / len(draws), expected, atol=0.03)
    probs = np.array([0.4, 0.3, 0.2, 0.06, 0.04], dtype=np.float32)
    for draws_allowed in (geometry_model.MAX_REJECTION_DRAWS, 0):  # rejection, then the fallback
        geometry_model.MAX_REJECTION_DRAWS = draws_allowed
        try:
            draws = [sample_logits(np.log(probs), 1.0, 0.85, generator) for _ in range(4000)]
            ties = [sample_logits(np.log([0.3, 0.3, 0.3, 0.1]), 1.0, 0.5, generator) for _ in range(600)]
        finally:
            geometry_model.MAX_REJECTION_DRAWS = 64
        expected = np.array([0.4, 0.3, 0.2, 0.0, 0.0]) / 0.9
        assert np.allclose(np.bincount(draws, minlength=5) / len(draws), expected, atol=0.03)
        assert set(ties) == {0, 1, 2}
    flat = -np.arange(1000, dtype=np.float32) * 1e-3  # top-p 0.5 keeps about the first 500
    draws = [sample_logits(flat, 1.0, 0.5, generator) for _ in range(300)]
    assert len(set(draws)) > 150 and max(draws) < 400


@pytest.mark.timeout(10)
def test_sample_logits_handles_odd_logits_and_temperatures_promptly():
    generator = torch.Generator().manual_seed(0)
    nan, inf = float("nan"), float("inf")
    for logits in ([nan] * 3, [nan, 1.0, nan], [0.0, inf, 1.0], [-inf] * 3, [3e38, -3e38, 1.0]):
        for temperature in (0.0, 1e-40, 0.7, 1.0, nan, inf):
            token = sample_logits(np.array(logits, dtype=np.float32), temperature, 0.9, generator)
            assert 0 <= token < 3
    assert sample_logits(np.array([nan, 1.0, nan], dtype=np.float32), 1.0, 1.0, generator) == 1
    assert sample_logits(np.array([5.0, 4.0, 0.0], dtype=np.float32), 1e-40, 0.9) == 0  # greedy
    state = generator.get_state()
    assert sample_logits(np.array([7.0], dtype=np.float32), 1.0, 0.9, generator) == 0
    assert torch.equal(generator.get_state(), state)  # a lone token takes no draw
    with pytest.raises(ValueError, match="no token is allowed"):
        sample_logits(np.zeros(0, dtype=np.float32), 1.0, 0.9)


def test_sequence_longer_than_the_context_is_refused():
    model = small_model(max_tokens=16)
    with pytest.raises(ValueError, match="max_tokens"):
        model(torch.randn(1, 384), torch.ones(1, 17, dtype=torch.long))


def test_augmentation_scales_rotates_about_z_and_jitters():
    rng = np.random.default_rng(0)
    verts = np.array([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, -1]])
    out = augment(verts, rng, jitter=0.0)
    assert np.allclose(out[:2, 2], 0)  # points on the ground plane stay on it: rotation about Z
    assert 0.75 <= abs(out[2, 2]) <= 1.25
    assert not np.allclose(
        augment(verts, rng, scale_range=(1, 1), jitter=0.01), augment(verts, rng, (1, 1), 0.0)
    )
    turned = augment(verts, rng, scale_range=(1, 1), jitter=0.0)  # default: 90-degree steps
    assert np.allclose(np.abs(turned[:2, :2]).sum(1), 1.0) and np.allclose(np.round(turned), turned)
    angles = {
        round(float(np.arctan2(*augment(verts, rng, (1, 1), 0.0, "any")[0, 1::-1])), 3) for _ in range(8)
    }
    assert len(angles) == 8
    with pytest.raises(ValueError, match="rotation"):
        augment(verts, rng, rotation="tilt")


def test_progress_follows_the_minute_limit_when_it_ends_the_run(tmp_path, monkeypatch):
    monkeypatch.setenv("BMT_DATA_DIR", str(tmp_path / "var"))
    config = TrainConfig(
        run_dir=str(tmp_path / "run"),
        max_steps=100_000,
        max_minutes=0.05,
        batch_tokens=1024,
        model_overrides=SMALL,
    )
    shares: list[float] = []
    result = train(config, progress=lambda share, _message: shares.append(share))
    assert result["result"]["steps"] < 100_000
    assert shares == sorted(shares) and 0.5 < shares[-1] <= 1.0  # by steps it would be ~0.0005


def test_training_reduces_loss_and_resume_continues_from_the_same_step(tmp_path, monkeypatch):
    monkeypatch.setenv("BMT_DATA_DIR", str(tmp_path / "var"))
    config = TrainConfig(
        run_dir=str(tmp_path / "run"),
        max_steps=30,
        batch_tokens=2048,
        lr=3e-3,
        warmup_steps=5,
        checkpoint_every=15,
        threads=2,
        model_overrides=SMALL,
    )
    shares: list[float] = []
    first = train(config, progress=lambda share, _message: shares.append(share))
    assert first["result"]["steps"] == 30
    assert shares == sorted(shares) and shares[-1] == 1.0  # the job's progress field
    losses = first["result"]
    assert losses["train_loss_last50"] < 8.0  # starts at ln(vocab) ~ 8.8
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["dataset"]["name"] == "synthetic-primitives" and "commit" in record["code"]
    assert list((tmp_path / "run").glob("events.out.tfevents.*"))
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert ckpt["step"] == 30
    config.max_steps, config.resume = 36, True
    second = train(config)
    assert second["result"]["steps"] == 36 and second["result"]["steps_this_session"] == 6
    model, saved = load_model(tmp_path / "run" / "checkpoint.pt")
    assert saved["step"] == 36 and model.config.d_model == 64
    exported = export_model(tmp_path / "run", tmp_path / "model.pt")
    assert exported["bytes"] < (tmp_path / "run" / "checkpoint.pt").stat().st_size / 2  # fp16, no optimizer
    with pytest.raises(ValueError, match="a parts run's"):
        export_model(tmp_path / "run", tmp_path / "guided.pt", layout_guidance=2.0)
    small, card = load_model(tmp_path / "model.pt")
    assert card["step"] == 36 and card["run"]["result"]["steps"] == 36
    text, tokens = torch.randn(1, 384), torch.tensor([[1, 5, 9]])
    assert torch.allclose(small(text, tokens)[0], model(text, tokens)[0], atol=0.05)
    tuned = train(
        TrainConfig(
            run_dir=str(tmp_path / "tuned"),
            max_steps=2,
            batch_tokens=1024,
            init_from=str(tmp_path / "model.pt"),
        )
    )  # no model_overrides: the architecture comes from the starting checkpoint
    assert tuned["result"]["steps"] == 2 and tuned["model_config"]["d_model"] == 64
    assert tuned["initialised_from"]["step"] == 36
    assert tuned["initialised_from"]["dataset"]["name"] == "synthetic-primitives"


def test_batches_hold_items_of_similar_length_within_the_token_budget(tmp_path):
    items = synthetic_items(200)  # 10 to 200 tokens: stairs and many-sided cylinders are long
    source = TokenSource(items, GeometryModelConfig.preset("tiny", **SMALL), tmp_path)
    config = TrainConfig(batch_tokens=1024)
    rng = np.random.default_rng(0)
    spreads, sizes = [], []
    for _ in range(40):
        indices = source.batch_indices(rng, config.batch_tokens)
        lengths = source.lengths[indices]
        assert len(indices) * lengths.max() <= config.batch_tokens
        spreads.append(lengths.max() - lengths.min())
        sizes.append(len(indices))
    full_range = source.lengths.max() - source.lengths.min()
    assert np.median(spreads) < 0.25 * full_range
    assert max(sizes) > 2 * min(sizes)  # short items come in bigger batches
    text, inputs, targets = source.batch(rng, True, config)
    assert text.shape == (inputs.shape[0], 384) and inputs.shape == targets.shape


def test_worker_processes_feed_training_and_the_schedule_can_follow_minutes(tmp_path, monkeypatch):
    monkeypatch.setenv("BMT_DATA_DIR", str(tmp_path / "var"))
    config = TrainConfig(
        run_dir=str(tmp_path / "run"),
        max_steps=8,
        batch_tokens=1024,
        warmup_steps=2,
        workers=2,
        schedule_minutes=30.0,
        model_overrides=SMALL,
    )
    record = train(config)
    assert record["result"]["steps"] == 8 and record["train_config"]["workers"] == 2
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert 0 < ckpt["minutes_trained"] == pytest.approx(record["result"]["minutes_trained"], rel=0.5)
    assert record["result"]["best_step"] == 8
    assert export_model(tmp_path / "run", tmp_path / "best.pt", best=True)["step"] == 8
    # Warm-up by steps, then cosine over the minutes, to 10% of the peak, whatever max_steps says.
    assert _lr(0, 0.0, config) == pytest.approx(config.lr / 2)
    assert _lr(2, 0.0, config) == pytest.approx(config.lr)
    assert _lr(5, 15.0, config) == pytest.approx(0.55 * config.lr)
    assert _lr(5, 45.0, config) == pytest.approx(0.1 * config.lr)


def test_cached_caption_embeddings_spare_the_encoder(tmp_path, monkeypatch):
    from shared.ml import text_embedding

    monkeypatch.setenv("BMT_DATA_DIR", str(tmp_path / "var"))
    items = synthetic_items(6)
    write_dataset(tmp_path / "ds", {"train": items[:4], "test": items[4:]})
    text_embedding.embed([c for it in items for c in it["captions"]])  # in memory only: still written
    assert cache_caption_embeddings(str(tmp_path / "ds")) >= len({c for it in items for c in it["captions"]})
    # As on a machine without the encoder: nothing in memory, the encoder unavailable.
    monkeypatch.setattr(text_embedding, "_memory", OrderedDict())
    monkeypatch.setattr(text_embedding, "_encoder", lambda: pytest.fail("the encoder was needed"))
    source = TokenSource(load_items(str(tmp_path / "ds"), "train"), small_model().config, default_cache_dir())
    assert len(source.caption_vectors) >= 4
    sheet = [prompt for prompt, _ in PROMPT_SHEET]  # what evaluate_geometry renders besides the split
    assert text_embedding.embed(sheet, default_cache_dir()).shape == (len(sheet), 384)


def test_the_memory_cache_of_embeddings_keeps_only_the_most_recently_used(monkeypatch):
    """A server embeds every new prompt: the cache must not grow with them."""
    from shared.ml import text_embedding

    monkeypatch.setattr(text_embedding, "MEMORY_CACHE_ITEMS", 3)
    monkeypatch.setattr(text_embedding, "_memory", OrderedDict())
    prompts = [f"a wooden chair number {i}" for i in range(5)]
    vectors = text_embedding.embed(prompts)  # a batch larger than the cache still comes back whole
    assert vectors.shape == (5, 384)

    def cached() -> list[str]:
        digests = {hashlib.sha256(p.encode()).hexdigest(): p for p in [*prompts, "a table"]}
        return [digests[key] for key in text_embedding._memory]

    assert cached() == prompts[2:]
    text_embedding.embed([prompts[2]])  # used again: now the most recent
    text_embedding.embed(["a table"])
    assert cached() == [prompts[4], prompts[2], "a table"]
    assert np.allclose(text_embedding.embed([prompts[0]])[0], vectors[0], atol=1e-5)  # encoded again


def test_an_embedding_depends_on_its_text_only_not_its_batch_or_threads(monkeypatch):
    """Bit for bit: the labeller's category choice is an argmax over these vectors, and a 1e-7
    change flips a near-tie (the same corpus built two dataset versions)."""
    from shared.ml import text_embedding

    def fresh(texts: list[str], threads: int) -> np.ndarray:
        monkeypatch.setattr(text_embedding, "_memory", OrderedDict())
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return text_embedding.embed(texts)
        finally:
            torch.set_num_threads(previous)

    alone = fresh(["a wooden chair"], 1)[0]
    tower = "a tall stone castle tower with a wooden door, narrow windows and a pointed slate roof"
    for threads in (1, 2):
        assert np.array_equal(fresh([tower, "a wooden chair", "sword"], threads)[1], alone)


def test_resume_without_a_checkpoint_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(TrainConfig(run_dir=str(tmp_path / "none"), resume=True, model_overrides=SMALL))


def test_dataset_reader_reads_splits_and_refuses_bad_references(tmp_path):
    items = synthetic_items(6)
    write_dataset(tmp_path / "ds", {"train": items[:4], "test": items[4:]})
    assert [it["id"] for it in iter_split(tmp_path / "ds", "test")] == sorted(it["id"] for it in items[4:])
    assert dataset_version(tmp_path / "ds" / "manifest.json")["items"] == {"train": 4, "val": 0, "test": 2}
    with pytest.raises(DatasetError, match="no manifest file or folder"):
        open_dataset(tmp_path / "missing")
    with pytest.raises(DatasetError, match="unknown split"):
        list(iter_split(tmp_path / "ds", "dev"))
    shard = next((tmp_path / "ds").glob("*.tar"))
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(DatasetError, match="does not match"):
        list(iter_split(tmp_path / "ds", "train")) + list(iter_split(tmp_path / "ds", "test"))
    (tmp_path / "other.json").write_text(json.dumps({"specialist": "material", "splits": {}}))
    with pytest.raises(DatasetError, match="not a geometry"):
        open_dataset(tmp_path / "other.json")
    assert open_dataset(tmp_path / "other.json", "material")[0]["specialist"] == "material"


def test_a_dataset_in_the_blob_store_is_found_by_name_newest_first(tmp_path):
    from shared.blobs import get_blob_store
    from shared.db import ensure_schema, session_scope
    from shared.db.models import Dataset

    with pytest.raises(DatasetError, match="metadata database cannot be read"):
        open_dataset("mine")  # no schema yet
    ensure_schema()
    store = get_blob_store()
    items = synthetic_items(6)
    for version, test_items in (("1", items[4:5]), ("2", items[4:])):
        write_dataset(tmp_path / version, {"train": items[:4], "test": test_items})
        for shard in (tmp_path / version).glob("*.tar"):
            store.put_file(shard)
        key = store.put_file(tmp_path / version / "manifest.json")
        with session_scope() as session:
            session.add(
                Dataset(name="mine", version=version, specialist="geometry", seed=0, manifest_key=key)
            )
    assert len(list(iter_split("mine", "test"))) == 2  # version 2, the newest
    version = dataset_version("mine")
    assert version["items"]["train"] == 4 and version["manifest_sha256"] == key
    with pytest.raises(DatasetError, match="nor the name"):
        open_dataset("theirs")
    # Exported to a folder, the same bytes: a run elsewhere records the same manifest sha256.
    exported = export_dataset("mine", tmp_path / "exported")
    assert dataset_version(exported)["manifest_sha256"] == key
    assert [it["id"] for it in iter_split(exported, "test")] == [
        it["id"] for it in iter_split("mine", "test")
    ]
    with pytest.raises(DatasetError, match="nor the name"):
        export_dataset("theirs", tmp_path / "nothing")


def test_config_round_trips_through_a_dict():
    config = GeometryModelConfig.preset("base", tokenizer=TokenizerConfig(bits=8))
    assert GeometryModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown preset"):
        GeometryModelConfig.preset("huge")


def test_train_geometry_task_records_the_run_and_is_idempotent():
    from shared.db import ensure_schema, session_scope
    from shared.db.models import Job, RunStatus, TrainingRun
    from shared.queue import app, submit

    ensure_schema()
    first = submit("train.geometry", preset="tiny", max_steps=2, max_minutes=5)
    with session_scope() as session:
        result = session.get(Job, first).result
        runs = session.query(TrainingRun).all()
        assert len(runs) == 1 and runs[0].status == RunStatus.SUCCEEDED
        assert runs[0].checkpoint_key == result["checkpoint_key"] and runs[0].metrics["steps"] == 2
    again = submit("train.geometry", preset="tiny", max_steps=2, max_minutes=5)
    # A duplicate delivery of the finished job (same task id) keeps its result whole.
    app.tasks["train.geometry"].apply(
        kwargs={"preset": "tiny", "max_steps": 2, "max_minutes": 5}, task_id=first
    )
    with session_scope() as session:
        repeated = session.get(Job, again).result
        assert session.get(Job, first).result == result
        assert session.query(TrainingRun).count() == 1  # the finished run was not trained again
    assert {k: repeated[k] for k in ("run_dir", "training_run_id", "checkpoint_key", "steps")} == {
        k: result[k] for k in ("run_dir", "training_run_id", "checkpoint_key", "steps")
    }


def test_a_redelivered_training_job_resumes_its_run_folder_after_a_new_commit(monkeypatch):
    """A worker updated between two deliveries of one job (a new commit) must not start a second
    run beside the first one's folder and row."""
    import services.trainer.geometry as geometry
    import services.trainer.tasks  # noqa: F401  registers train.geometry
    from shared.db import ensure_schema, session_scope
    from shared.db.models import RunStatus, TrainingRun
    from shared.queue import app

    ensure_schema()
    folders: list[str] = []
    real_train = geometry.train

    def dies_the_first_time(config, progress=None):
        folders.append(config.run_dir)
        if len(folders) == 1:
            raise RuntimeError("the worker stopped here")  # after claiming its run, as a kill would
        return real_train(config, progress)

    monkeypatch.setattr(geometry, "train", dies_the_first_time)
    task = app.tasks["train.geometry"]
    kwargs = {"preset": "tiny", "max_steps": 1, "max_minutes": 5}
    assert task.apply(kwargs=kwargs, task_id="job-across-commits").failed()
    monkeypatch.setattr(geometry, "code_version", lambda: {"commit": "f" * 40, "dirty": False})
    result = task.apply(kwargs=kwargs, task_id="job-across-commits").get()
    assert folders[0] == folders[1] == result["run_dir"]
    with session_scope() as session:
        (run,) = session.query(TrainingRun).all()
        assert run.status is RunStatus.SUCCEEDED and run.id == result["training_run_id"]


@pytest.mark.parametrize(
    ("path", "dataset"),
    [
        ("models/geometry/tiny/model.pt", "synthetic-primitives"),
        ("models/geometry/tiny-full/model.pt", "full"),
    ],
)
def test_committed_checkpoints_load_sample_and_name_their_data(path, dataset):
    from pathlib import Path

    model, ckpt = load_model(Path(__file__).resolve().parents[1] / path)
    assert ckpt["run"]["dataset"]["name"] == dataset  # the model card's data and license claims rest on it
    tokens, mesh = model.generate(
        torch.ones(384) / 384**0.5, face_budget=8, generator=torch.Generator().manual_seed(0)
    )
    assert decode(tokens, model.config.tokenizer).faces == mesh.faces and 1 <= len(mesh.faces) <= 8
