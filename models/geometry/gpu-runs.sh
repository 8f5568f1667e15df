#!/usr/bin/env bash
# The GPU runs of models/geometry/README.md ("On a GPU"), as one command for a lent machine that has
# PyTorch but no network and none of our other packages. On the CPU machine, `make gpu-bundle`
# packs the dataset `full` (byte for byte, the same manifest sha256) and every caption's embedding
# into .gpu/bundle.tgz; carry that file and run there, from the repository root:
#   mkdir -p .gpu && tar xzf .gpu/bundle.tgz -C .gpu && MINUTES=5 bash models/geometry/gpu-runs.sh
# In parallel on the one GPU: the shipped tiny checkpoint fine-tuned on `full`, and the base preset
# from scratch, each for $MINUTES with the learning rate decayed over those minutes; then a short
# evaluation of base's weights of the lowest val loss on the GPU (in fp16 they are about 190 MB,
# too big to bring back). Results, the tiny model's last and best weights, and the logs go to $OUT.
set -u
DATA=${DATA:-.gpu/full}
OUT=${OUT:-runs/gpu}
MINUTES=${MINUTES:-5.5}
RUNS=${RUNS:-/tmp/geometry-gpu-runs}
export PYTHONUNBUFFERED=1 BMT_DATA_DIR=${BMT_DATA_DIR:-.gpu/var}
mkdir -p "$OUT" "$RUNS"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc
  python3 -c 'import sys, torch; print(sys.version.split()[0], torch.__version__)'; } > "$OUT/machine.txt"

train() {  # name, then trainer arguments
  local name=$1; shift
  python3 -m services.trainer geometry --dataset "$DATA" --run-dir "$RUNS/$name" --max-steps 1000000 \
    --max-minutes "$MINUTES" --schedule-minutes "$MINUTES" --batch-tokens "${BATCH_TOKENS:-32768}" "$@" \
    > "$OUT/$name.log" 2>&1
}
python3 -m benchmarks.generate --repeats 2 --threads 4 > "$OUT/bench-generate.txt" 2>&1 &
train tiny-ft --preset tiny --init-from models/geometry/tiny/model.pt --lr 1e-3 --workers 6 \
  --checkpoint-every 250 &
train base --preset base --lr 6e-4 --workers 8 --checkpoint-every 500 &
wait

python3 -m services.trainer export --run-dir "$RUNS/tiny-ft" --out "$OUT/tiny-ft.pt"
python3 -m services.trainer export --run-dir "$RUNS/tiny-ft" --out "$OUT/tiny-ft-best.pt" --best
python3 -m services.trainer export --run-dir "$RUNS/base" --out "$RUNS/base.pt" --best
timeout "${EVAL_SECONDS:-150}" python3 -m services.trainer.evaluate_geometry --checkpoint "$RUNS/base.pt" \
  --dataset "$DATA" --device cuda --prompts "${EVAL_PROMPTS:-16}" --out "$RUNS/eval-base" \
  > "$OUT/eval-base.log" 2>&1
(cd "$RUNS" && tar czf - --exclude='*.pt' --exclude='*.tmp' -- *) > "$OUT/runs.tgz"
cat "$OUT/machine.txt" "$OUT/bench-generate.txt"
for name in tiny-ft base; do
  echo "$name:"; python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['result'])" \
    "$RUNS/$name/run.json"
done
tail -n 16 "$OUT/eval-base.log"
