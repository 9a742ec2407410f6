#!/usr/bin/env bash
# GPU check, one command (about 7 minutes on one H200): CUDA tests, a full MNIST fit on CUDA in
# fp32 and in bf16-mixed, the fast recipe eager and in CUDA graphs, the Lightning/bare-loop epoch
# ratio, the manual/torch epoch-time ratio and the benchmarks, on CUDA.
# Measured 2026-11-29 on one H200 (torch 2.11): tests 30 s, each fit 35 s, compare_impl 58 s,
# benchmarks 71 s with --no-extra (results: benchmarks/results/gpu_check_h200/, cuda.md).
# Needs the train extra (lightning, torchmetrics, torchvision, jsonargparse[signatures]) installed.
#
#   scripts/gpu_check.sh OUT_DIR
#
# Everything lands in OUT_DIR: env.txt, pytest_cuda.txt, fit_fp32/, fit_bf16/, fit_fast/ and
# fit_fast_graphs/ (each a run folder with results.json, metrics.csv, curves.png, config.yaml,
# checkpoints), train_loop_<device>.{md,json}, compare_impl.json,
# benchmarks/, and summary.txt (one line per step with its exit status and seconds).
# Real MNIST is read from $MNIST_ROOT (default: ../shared/data beside the checkout).
# ACCELERATOR=cpu and EXTRA_ARGS="--trainer.limit_train_batches 5 ..." make a quick smoke run of
# the script itself on a machine without a GPU.
set -uo pipefail
OUT="${1:?usage: scripts/gpu_check.sh OUT_DIR}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY=python3
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
: > "$OUT/summary.txt"
status=0
ACCEL="${ACCELERATOR:-cuda}"
read -r -a EXTRA <<< "${EXTRA_ARGS:-}"

step() {  # step NAME LIMIT_SECONDS COMMAND...: run, log to OUT/NAME.log, record status and time
  local name="$1" limit="$2"; shift 2
  local t0=$SECONDS rc
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  echo "$name: exit $rc, $((SECONDS - t0)) s" | tee -a "$OUT/summary.txt"
  [ "$rc" -eq 0 ] || status=1
}

{ nvidia-smi; "$PY" -c "import torch, lightning; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'lightning', lightning.__version__, 'device', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)"; } \
  > "$OUT/env.txt" 2>&1

step pytest_cuda 150 "$PY" -m pytest -q -m cuda -rs tests
for prec in fp32:32-true bf16:bf16-mixed; do
  step "fit_${prec%%:*}" 120 "$PY" -m train fit --config configs/mnist.yaml --trainer.accelerator "$ACCEL" \
    --trainer.precision "${prec#*:}" --trainer.enable_progress_bar false \
    --trainer.default_root_dir "$OUT/fit_${prec%%:*}" "${EXTRA[@]}"
done
# the fast recipe, and the same in CUDA graphs (compile + reduce-overhead)
step fit_fast 120 "$PY" -m train fit --config configs/mnist_fast.yaml --trainer.accelerator "$ACCEL" \
  --trainer.enable_progress_bar false --trainer.default_root_dir "$OUT/fit_fast" "${EXTRA[@]}"
step fit_fast_graphs 180 "$PY" -m train fit --config configs/mnist_fast.yaml --trainer.accelerator "$ACCEL" \
  --model.compile true --model.compile_mode reduce-overhead --trainer.enable_progress_bar false \
  --trainer.default_root_dir "$OUT/fit_fast_graphs" "${EXTRA[@]}"
# the Lightning fit beside a bare loop: train_loop_<device>.{md,json}
step train_loop 150 "$PY" -m benchmarks.train_loop --device "$ACCEL" --rounds 3 --epochs 3 --out "$OUT"
step compare_impl 90 "$PY" scripts/compare_impl.py --config configs/mnist.yaml --rounds 3 --epochs 3 \
  --out "$OUT/compare_impl.json" -- --trainer.accelerator "$ACCEL" "${EXTRA[@]}"
# 10 rounds: on one H200 the 14 built-in cases took 71 s so; 25 rounds and the extras passed 180 s
step benchmarks 240 "$PY" -m benchmarks --device "$ACCEL" --rounds 10 --out "$OUT/benchmarks" ${BENCH_ARGS:-}

grep -h -E "Test accuracy|Fit took|ratio manual/torch|Lightning/bare" "$OUT"/fit_*.log "$OUT/compare_impl.log" "$OUT/train_loop.log" 2>/dev/null \
  | tee -a "$OUT/summary.txt"
exit $status
