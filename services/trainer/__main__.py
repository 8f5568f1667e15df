"""Trainer CLI.

python -m services.trainer geometry [--model flat|parts] --preset tiny [--dataset MANIFEST] [--resume]
python -m services.trainer export --run-dir runs/geometry-tiny --out models/geometry/tiny/model.pt
python -m services.trainer embed-captions --dataset full    fill the text-embedding cache
python -m services.trainer decompose --dataset full        fill the parts-decomposition cache
python -m services.trainer geometry-classifier --dataset full  the evaluation's shape classifier
python -m services.trainer material --preset tiny --dataset full [--resume] [--export models/material/tiny/model.pt]
python -m services.trainer modifier --preset tiny [--dataset full] [--export models/modifier/tiny/model.pt]
python -m services.trainer animation --preset tiny [--dataset full]   (services/trainer/animation.py)
"""

from __future__ import annotations

import argparse
import json

from services.trainer import animation, geometry_classifier, material, modifier
from services.trainer.geometry import TrainConfig, cache_caption_embeddings, export_model, train


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.trainer")
    sub = parser.add_subparsers(dest="specialist", required=True)
    geo = sub.add_parser("geometry", help="train the text-to-mesh model")
    geo.add_argument(
        "--model",
        default="flat",
        choices=["flat", "parts"],
        help="flat: one token sequence per object; parts: a structure model, then a part model",
    )
    geo.add_argument(
        "--stages",
        nargs="+",
        default=["structure", "part"],
        choices=["structure", "part"],
        help="--model parts: which of its two models to train",
    )
    geo.add_argument(
        "--preset", default="tiny", choices=["tiny", "small", "base"], help="small: --model parts only"
    )
    geo.add_argument(
        "--dataset", help="manifest sha256, manifest file or folder; default: synthetic primitives"
    )
    geo.add_argument("--run-dir", help="default runs/geometry-<preset>")
    geo.add_argument("--resume", action="store_true", help="continue from <run-dir>/checkpoint.pt")
    geo.add_argument("--init-from", help="fine-tune: start from this checkpoint's weights and model config")
    geo.add_argument("--max-steps", type=int, default=TrainConfig.max_steps)
    geo.add_argument("--max-minutes", type=float, default=TrainConfig.max_minutes)
    geo.add_argument(
        "--batch-tokens", type=int, default=TrainConfig.batch_tokens, help="padded tokens per batch"
    )
    geo.add_argument("--lr", type=float, default=TrainConfig.lr)
    geo.add_argument(
        "--warmup-steps", type=int, default=TrainConfig.warmup_steps, help="linear learning-rate warm-up"
    )
    geo.add_argument("--checkpoint-every", type=int, default=TrainConfig.checkpoint_every)
    geo.add_argument("--threads", type=int, default=TrainConfig.threads, help="torch CPU threads")
    geo.add_argument(
        "--workers", type=int, default=0, help="processes preparing batches (for a GPU); 0: in-process"
    )
    geo.add_argument(
        "--schedule-minutes",
        type=float,
        help="decay the learning rate over this many minutes of training instead of --max-steps",
    )
    geo.add_argument(
        "--dropout",
        type=float,
        help="the trained model's dropout, also with --init-from; default: its preset's",
    )
    geo.add_argument(
        "--condition-dropout",
        type=float,
        default=0.0,
        help="share of training rows trained without their condition (for classifier-free guidance)",
    )
    geo.add_argument(
        "--layout-exemplars",
        action="store_true",
        help="parts: condition the structure model on the nearest training layout too (a fine-tune "
        "from a plain structure model starts as it was)",
    )
    geo.add_argument("--seed", type=int, default=0)
    geo.add_argument(
        "--rotation", choices=["right", "any"], default="right", help="Z turns: 90-degree steps or any"
    )
    export = sub.add_parser("export", help="write a run's checkpoint as a small fp16 model file for serving")
    export.add_argument("--run-dir", default="runs/geometry-tiny")
    export.add_argument("--out", default="models/geometry/tiny/model.pt")
    export.add_argument("--best", action="store_true", help="the weights of the lowest val loss (best.pt)")
    export.add_argument(
        "--layout-guidance",
        type=float,
        default=1.0,
        help="a parts run: classifier-free guidance scale of its structure model (1: none)",
    )
    export.add_argument(
        "--untrained-from",
        help="a parts run that trained one of its models: the parts file that gives the other",
    )
    captions = sub.add_parser(
        "embed-captions", help="cache the embedding of every caption (for a machine without the encoder)"
    )
    captions.add_argument("--dataset", help="besides the synthetic items' captions")
    decompose = sub.add_parser(
        "decompose", help="cache a dataset's parts decomposition (train, val) for --model parts elsewhere"
    )
    decompose.add_argument(
        "--dataset", required=True, help="geometry dataset: name, manifest sha256 or folder"
    )
    decompose.add_argument("--preset", default="tiny", help="the parts preset whose rule to apply")
    decompose.add_argument("--workers", type=int, default=2, help="processes sharing the work")
    nearest = sub.add_parser(
        "nearest-layouts",
        help="a parts file whose layouts are the training layouts nearest the prompt (its part model writes the parts)",
    )
    nearest.add_argument("--parts", required=True, help="the parts file to start from")
    nearest.add_argument(
        "--dataset", required=True, help="geometry dataset whose train split gives the layouts"
    )
    nearest.add_argument("--out", required=True)
    geometry_classifier.add_parser(sub)
    material.add_parser(sub)
    modifier.add_parser(sub)
    animation.add_parser(sub)
    args = parser.parse_args(argv)
    if getattr(args, "handler", None):  # sub-commands registered by add_parser carry their own handler
        args.handler(args)
        return
    if args.specialist == "export":
        print(export_model(args.run_dir, args.out, args.best, args.layout_guidance, args.untrained_from))
        return
    if args.specialist == "decompose":
        from services.trainer.geometry_parts import cache_decompositions

        print(cache_decompositions(args.dataset, args.preset, args.workers))
        return
    if args.specialist == "nearest-layouts":
        from services.trainer.geometry_parts import with_nearest_layouts

        print(with_nearest_layouts(args.parts, args.dataset, args.out))
        return
    if args.specialist == "embed-captions":
        print(f"{cache_caption_embeddings(args.dataset)} captions cached")
        return
    config = TrainConfig(
        preset=args.preset,
        dataset=args.dataset,
        model=args.model,
        stages=tuple(args.stages),
        run_dir=args.run_dir or f"runs/geometry-{'parts-' if args.model == 'parts' else ''}{args.preset}",
        max_steps=args.max_steps,
        max_minutes=args.max_minutes,
        batch_tokens=args.batch_tokens,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        checkpoint_every=args.checkpoint_every,
        threads=args.threads,
        workers=args.workers,
        schedule_minutes=args.schedule_minutes,
        seed=args.seed,
        resume=args.resume,
        init_from=args.init_from,
        rotation=args.rotation,
        dropout=args.dropout,
        condition_dropout=args.condition_dropout,
        layout_exemplars=args.layout_exemplars,
    )
    record = train(config)
    print(json.dumps(record["result"], indent=2))


if __name__ == "__main__":
    main()
