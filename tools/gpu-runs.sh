#!/usr/bin/env bash
# The lent-GPU session's training runs as one command, for a machine that has PyTorch but no network
# and none of our other packages (pydantic's travel as wheels in .whl; see the device notes). On the
# CPU machine, `make gpu-bundle` packs the animation dataset `full` (byte for byte: the same manifest
# sha256), geometry's parts decomposition with the manifest that names it, and every caption's and
# prompt's embedding into .gpu/bundle.tgz; carry .gpu and .whl, and run there from the repository root:
#   MINUTES=6 bash tools/gpu-runs.sh
# Side by side on the one GPU, each for $MINUTES with its learning rate decayed over them:
#   parts-ft     the committed parts model's part model fine-tuned (its structure model from that file)
#   parts-small  the `small` parts preset from scratch: structure and part model, two processes
#   animation    the tiny animation preset from scratch
# Each run keeps the weights of its lowest val loss; they come back exported (fp16) in
# $OUT/checkpoints.tgz.* pieces of 15 MB (the machine returns at most 8 files of 16 MiB), the logs and
# run records in $OUT/runs.tgz:
#   cat checkpoints.tgz.* | tar xzf -
# The flat-model runs of 2026-11-26 (models/geometry/README.md, "On a GPU") are this file at b1c8edb.
set -u
OUT=${OUT:-runs/gpu}
MINUTES=${MINUTES:-6}
RUNS=${RUNS:-/tmp/gpu-runs}
export PYTHONUNBUFFERED=1 BMT_DATA_DIR=.gpu/var
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
LOGS=$RUNS/logs
mkdir -p "$OUT" "$RUNS/out" "$LOGS" && tar xzf .gpu/bundle.tgz -C .gpu || exit 1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc
  python3 -c 'import sys, torch; print(sys.version.split()[0], torch.__version__)'; } > "$LOGS/machine.txt" 2>&1

limit=$(python3 -c "print(int($MINUTES * 60 + 180))")  # a hung run must not take the exports' time
common=(--max-steps 1000000 --max-minutes "$MINUTES" --schedule-minutes "$MINUTES" --threads 2)
parts() {  # log name, run folder, then trainer arguments
  local log=$1 run=$2; shift 2
  timeout "$limit" python3 -m services.trainer geometry --model parts --dataset .gpu/full --run-dir "$RUNS/$run" \
    "${common[@]}" "$@" > "$LOGS/$log.log" 2>&1
}
parts parts-ft parts-ft --preset small --stages part --init-from models/geometry/parts-small/model.pt \
  --lr 5e-4 --warmup-steps 50 --batch-tokens 32768 --workers 3 --checkpoint-every 100 &
parts parts-small-structure parts-small --preset small --stages structure --lr 1e-3 --warmup-steps 100 \
  --batch-tokens 8192 --workers 2 --checkpoint-every 50 &
parts parts-small-part parts-small --preset small --stages part --lr 1e-3 --warmup-steps 100 \
  --batch-tokens 32768 --workers 3 --checkpoint-every 100 &
timeout "$limit" python3 -m services.trainer animation --preset tiny --dataset .gpu/animation \
  --run-dir "$RUNS/animation" "${common[@]}" --lr 1e-3 --batch-tokens 16384 --checkpoint-every 100 \
  > "$LOGS/animation.log" 2>&1 &
wait

for run in parts-ft parts-small; do
  python3 -m services.trainer export --run-dir "$RUNS/$run" --out "$RUNS/out/$run.pt" --best >> "$LOGS/export.log" 2>&1
done
python3 -m services.trainer animation-export --run-dir "$RUNS/animation" --out "$RUNS/out/animation.pt" --best \
  >> "$LOGS/export.log" 2>&1
tar czf - -C "$RUNS/out" . | split -b 15000000 - "$OUT/checkpoints.tgz."
(cd "$RUNS" && tar czf - --exclude='*.pt' --exclude='*.tmp' -- logs parts-ft parts-small animation) > "$OUT/runs.tgz"
cat "$LOGS/machine.txt" "$LOGS/export.log"
for run in parts-ft parts-small animation; do
  echo "$run:"; python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['result'])" "$RUNS/$run/run.json"
done
