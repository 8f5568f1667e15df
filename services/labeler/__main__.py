"""Labeller command line.

    python -m services.labeler run [--per-pack N] [--formats blend,glb] [--name NAME] [--seed S]
    python -m services.labeler label [--all]                                 label extracted scenes
    python -m services.labeler quality                                       rejection report
    python -m services.labeler dataset --name NAME [--specialist S|all] [--seed S]
    python -m services.labeler export NAME --out DIR [--specialist S]    a dataset as a folder, to train elsewhere
    python -m services.labeler diff A B [--specialist S]                 the items two versions disagree on, and how
    python -m services.labeler modifiers-derive [--geometry REF] [--modifier REF] [--name NAME]
        modifier stacks found in the geometry meshes and verified in Blender (a dataset folder)

Reports and plots go to <data_dir>/datasets/<name>/<specialist>/ and <data_dir>/quality.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from sqlalchemy import select

from services.labeler import pipeline
from services.labeler.dataset import SPECIALISTS, DatasetBuildError, build_dataset, load_records
from services.labeler.diff import diff_datasets
from services.labeler.report import quality_report, quality_table, write_dataset_report
from shared.blobs import get_blob_store
from shared.db import ensure_schema, session_scope
from shared.db.models import Extraction, ExtractionStatus, SceneObject
from shared.ml.datasets import DatasetError, export_dataset
from shared.settings import get_settings


def cmd_label(args: argparse.Namespace) -> None:
    with session_scope() as session:
        query = select(Extraction.id).where(Extraction.status == ExtractionStatus.OK).order_by(Extraction.id)
        if not args.all:  # only scenes with objects never labelled
            query = query.where(Extraction.objects.any(SceneObject.category.is_(None)))
        ids = list(session.scalars(query))
    pipeline.label_extractions(ids)
    print(f"labelled {len(ids)} extracted scenes")


def cmd_quality(args: argparse.Namespace) -> dict:
    with session_scope() as session:
        report = quality_report(load_records(session))
    path = get_settings().data_dir / "quality.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1))
    print(quality_table(report))
    print(f"report: {path}")
    return report


def cmd_dataset(args: argparse.Namespace) -> None:
    specialists = SPECIALISTS if args.specialist == "all" else (args.specialist,)
    settings = get_settings()
    store = get_blob_store()
    print(f"{'specialist':<10} {'version':<17} {'train':>6} {'val':>5} {'test':>5} {'dups':>5}  manifest")
    for specialist in specialists:
        with session_scope() as session:
            try:
                result = build_dataset(
                    session, store, settings, name=args.name, specialist=specialist, seed=args.seed
                )
            except DatasetBuildError as exc:
                print(f"{specialist:<10} skipped: {exc}")
                continue
        out = settings.data_dir / "datasets" / args.name / specialist
        write_dataset_report(result, out)
        n = {s: v["items"] for s, v in result.manifest["splits"].items()}
        dups = result.manifest["stats"]["duplicates_dropped"]
        print(
            f"{specialist:<10} {result.version:<17} {n['train']:>6} {n['val']:>5} {n['test']:>5} {dups:>5}  "
            f"{result.manifest_key} ({out})"
        )


def cmd_modifiers_derive(args: argparse.Namespace) -> int:
    from services.labeler.modifier_derive import derive

    out = get_settings().data_dir / "datasets" / args.name / "modifier"
    try:
        report = derive(
            args.geometry,
            args.modifier or None,
            out,
            workers=args.workers,
            limit=args.limit,
            construct=args.construct,
        )
    except DatasetError as exc:
        print(f"modifiers-derive failed: {exc}", file=sys.stderr)
        return 2
    print(
        f"{report['meshes']} meshes, {report['meshes_with_candidates']} with a candidate stack, "
        f"{report['verified_pairs']} verified in Blender; {report['real_items']} real stacks"
    )
    for kind, counts in report["per_type"].items():
        print(f"  {kind:<9} " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"seconds: {report['seconds']}; dataset: {report['dataset']}; report: {out / 'derive_report.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.labeler", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="register, extract and label a corpus sample, then build every dataset")
    run.add_argument(
        "--per-pack", type=int, default=5, help="files taken from each corpus pack folder; 0 takes all"
    )
    run.add_argument(
        "--formats", default="blend,glb", help="corpus formats to take (fbx needs Debian's assimp-utils)"
    )
    label = sub.add_parser("label", help="label extracted scenes (label.extraction)")
    label.add_argument("--all", action="store_true", help="also relabel scenes labelled before")
    sub.add_parser("quality", help="print and write the quality filter's rejections")
    dataset = sub.add_parser("dataset", help="build dataset versions (dataset.build)")
    for p in (run, dataset):
        p.add_argument("--name", required=p is dataset, default="sample", help="dataset name")
        p.add_argument("--specialist", choices=(*SPECIALISTS, "all"), default="all")
        p.add_argument("--seed", type=int, default=0, help="seed of the split assignment")
    export = sub.add_parser("export", help="copy a dataset (manifest, shards) into a folder")
    export.add_argument("dataset", help="dataset name or manifest sha256")
    export.add_argument("--specialist", choices=SPECIALISTS, default="geometry")
    export.add_argument("--out", required=True, help="folder; --dataset DIR reads it on another machine")
    diff = sub.add_parser("diff", help="name the items two dataset versions disagree on, and how")
    diff.add_argument("a", help="dataset name, manifest sha256, folder or manifest.json")
    diff.add_argument("b", help="the other one")
    diff.add_argument("--specialist", choices=SPECIALISTS, default="geometry")
    diff.add_argument("--most", type=int, default=50, help="item lines printed at most")
    derive = sub.add_parser(
        "modifiers-derive", help="derive modifier stacks from the geometry meshes, verified in Blender"
    )
    derive.add_argument(
        "--geometry", default="full", help="geometry dataset: name, manifest sha256 or folder"
    )
    derive.add_argument("--modifier", default="full", help="real modifier stacks to add; '' for none")
    derive.add_argument(
        "--name", default="full", help="report and dataset under <data_dir>/datasets/NAME/modifier"
    )
    derive.add_argument("--workers", type=int, default=1, help="Blender child processes")
    derive.add_argument("--limit", type=int, help="only the first N geometry meshes")
    derive.add_argument(
        "--construct",
        type=int,
        default=0,
        help="also build up to N pairs per type by applying stacks to training meshes",
    )
    args = parser.parse_args(argv)

    if args.command == "modifiers-derive":
        return cmd_modifiers_derive(args)
    ensure_schema()
    if args.command == "diff":
        try:
            found = diff_datasets(args.a, args.b, args.specialist)
        except DatasetError as exc:
            print(f"diff failed: {exc}", file=sys.stderr)
            return 2
        print("\n".join(found.lines(args.most)))
        return 0 if found.same else 1
    if args.command == "run":
        started = time.perf_counter()
        done = pipeline.run(args.per_pack, tuple(args.formats.split(",")))
        print(
            f"{done['files']} corpus files, {done['extractions']} extracted ({time.perf_counter() - started:.0f} s)"
        )
        cmd_quality(args)
        cmd_dataset(args)
    elif args.command == "label":
        cmd_label(args)
    elif args.command == "quality":
        cmd_quality(args)
    elif args.command == "export":
        try:
            print(f"dataset {args.dataset}: {export_dataset(args.dataset, args.out, args.specialist)}")
        except DatasetError as exc:
            print(f"export failed: {exc}", file=sys.stderr)
            return 2
    else:
        cmd_dataset(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
