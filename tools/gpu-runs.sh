#!/usr/bin/env bash
# The lent-GPU session's training runs as one command, for a machine that has PyTorch but no network
# and none of our other packages (pydantic's travel as wheels in .whl; see the device notes). On the
# CPU machine, `make gpu-bundle` packs the geometry dataset `full` (byte for byte: the same manifest
# sha256), its parts decomposition, and every caption's and sheet prompt's embedding into
# .gpu/bundle.txz; carry .gpu/bundle.txz and .whl, and run there from the repository root:
#   MINUTES=2 EVAL_MINUTES=5 bash tools/gpu-runs.sh
# Side by side on the one GPU, each for $MINUTES with its learning rate decayed over them: structure
# models trained with condition dropout, for classifier-free guidance of the layouts (the part model
# stays parts-small's):
#   ft-cd10, ft-cd20        parts-small's structure model fine-tuned, 10% / 20% of rows unconditioned
#   small-cd10, small-cd20  the `small` structure model from scratch, likewise
#   small-cd20-d3           from scratch with 20% unconditioned and dropout 0.3
# Each keeps the weights of its lowest val loss; the structure models come back (fp32 best.pt, with
# their run records and logs) in $OUT/structure.tgz.* pieces of 15 MB (the machine returns at most 8
# files of 16 MiB):
#   cat structure.tgz.* | tar xzf -
# The parts-small and animation runs of session 9 are this file at 572d032; the flat-model runs of
# 2026-11-26 (models/geometry/README.md, "On a GPU") are this file at b1c8edb.
set -u
OUT=${OUT:-runs/gpu}
MINUTES=${MINUTES:-6}
RUNS=${RUNS:-/tmp/gpu-runs}
export PYTHONUNBUFFERED=1 BMT_DATA_DIR=.gpu/var
WHEELS=${WHEELS:-.whl}  # none: use the packages this python has (a dry run on the CPU machine)
if [ -d "$WHEELS" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$WHEELS"/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
LOGS=$RUNS/logs
mkdir -p "$OUT" "$RUNS/out" "$LOGS" && tar xJf .gpu/bundle.txz -C .gpu || exit 1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc
  python3 -c 'import sys, torch; print(sys.version.split()[0], torch.__version__)'; } > "$LOGS/machine.txt" 2>&1

limit=$(python3 -c "print(int($MINUTES * 60 + 180))")  # a hung run must not take the exports' time
structure() {  # run name, then trainer arguments
  local run=$1; shift
  timeout "$limit" python3 -m services.trainer geometry --model parts --stages structure --dataset .gpu/full \
    --run-dir "$RUNS/$run" --max-steps 1000000 --max-minutes "$MINUTES" --schedule-minutes "$MINUTES" \
    --threads 2 --batch-tokens 8192 --workers 2 --checkpoint-every 50 "$@" > "$LOGS/$run.log" 2>&1
}
tune=(--init-from models/geometry/parts-small/model.pt --lr 3e-4 --warmup-steps 50)
scratch=(--preset small --lr 1e-3 --warmup-steps 100)
structure ft-cd10 "${tune[@]}" --condition-dropout 0.1 &
structure ft-cd20 "${tune[@]}" --condition-dropout 0.2 &
structure small-cd10 "${scratch[@]}" --condition-dropout 0.1 &
structure small-cd20 "${scratch[@]}" --condition-dropout 0.2 &
structure small-cd20-d3 "${scratch[@]}" --condition-dropout 0.2 --dropout 0.3 &
wait

runs=(ft-cd10 ft-cd20 small-cd10 small-cd20 small-cd20-d3)
(cd "$RUNS" && tar czf - logs $(for run in "${runs[@]}"; do echo "$run/structure/best.pt $run/structure/run.json"; done)) \
  | split -b 15000000 - "$OUT/structure.tgz."
cat "$LOGS/machine.txt"
for run in "${runs[@]}"; do
  echo "$run:"; python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['result'])" "$RUNS/$run/structure/run.json"
done

# Chosen on val: each run's structure model with parts-small's part model, its layouts unguided and
# guided at 2 and 3, and parts-small itself; one evaluation process per checkpoint, one thread each
# (each repeats retrieval and the real meshes): the machine's 16 cores are what this phase needs.
# Session 11 (EVAL_MINUTES=4.5): sampling took 2.8 to 4 minutes a process (1.3 s an object, 16 at
# once), and none finished its metrics in time; the choice was made on the CPU machine instead.
# Give it 8 minutes, or try EVAL_DEVICE=cuda (parts sampling on a GPU was fixed after that run,
# untried there since).
eval_limit=$(python3 -c "print(int(${EVAL_MINUTES:-4} * 60))")
for run in "${runs[@]}"; do
  for g in 1 2 3; do
    python3 -m services.trainer export --run-dir "$RUNS/$run" --out "$RUNS/out/$run-g$g.pt" --best \
      --untrained-from models/geometry/parts-small/model.pt --layout-guidance $g > "$LOGS/export-$run-g$g.log" 2>&1 &
  done
done
wait
evaluate() {  # name, checkpoint
  timeout "$eval_limit" python3 -m services.trainer.evaluate_geometry --split val --dataset .gpu/full \
    --device "${EVAL_DEVICE:-cpu}" --threads 1 --out "$RUNS/eval/$1" --checkpoint "$2" > "$LOGS/eval-$1.log" 2>&1
}
evaluate parts-small models/geometry/parts-small/model.pt &
for run in "${runs[@]}"; do
  for g in 1 2 3; do evaluate "$run-g$g" "$RUNS/out/$run-g$g.pt" & done
done
wait
(cd "$RUNS" && tar czf - logs $(ls -d eval/*/metrics.json eval/*/eval.json eval/*/prompt_sheet.png 2>/dev/null)) > "$OUT/eval.tgz"
for f in "$RUNS"/eval/*/metrics.json; do
  python3 -c "import json, sys; m = json.load(open(sys.argv[1])); print(sys.argv[1].split('/')[-2], {k: m.get(k) for k in ('category_accuracy', 'retrieval_category_accuracy', 'real_category_accuracy', 'prompt_sheet_category_accuracy', 'cov', 'one_nna', 'manifold_share', 'seconds_per_object')})" "$f"
done
