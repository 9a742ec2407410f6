#!/usr/bin/env bash
# GPU check, one command: the CUDA tests, MNIST fits on CUDA (fp32, bf16-mixed, the fast recipe
# eager and in CUDA graphs), the Lightning/bare-loop epoch ratio, the manual/torch epoch-time ratio
# and the benchmarks (#27's memory-bound cases and kernel launches included), then #27's target
# ratios. Each step runs under a time limit; the limits add up to 540 s:
#   imports 15, pytest_cuda 140, fit_fp32 45, fit_bf16 45, fit_fast 40, fit_fast_graphs 70,
#   train_loop 30, compare_impl 30, benchmarks 115, targets 10 (the CUDA tests first: they hold
#   the transformer layers' kernels too, each compiled on its first launch).
# Installs nothing: the first step reports which imports are missing, and a step that needs one
# is skipped (and the check fails) instead of failing half-way.
#
#   scripts/gpu_check.sh OUT_DIR
#
# Everything lands in OUT_DIR: env.txt (nvidia-smi, versions, missing imports), pytest_cuda.log,
# fit_fp32/, fit_bf16/, fit_fast/ and fit_fast_graphs/ (each a run folder with results.json,
# metrics.csv, curves.png, config.yaml, checkpoints), train_loop_<device>.{md,json},
# compare_impl.json, benchmarks/ (cuda.{md,json,png}), targets.txt, and summary.txt (one line per
# step with its exit status and seconds, then the fits' figures and the target ratios).
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

needs() {  # needs NAME MODULE...: 0 if every MODULE imports, else a "skipped" line and 1
  local name="$1" m lack=(); shift
  for m in "$@"; do [[ " $MISSING " == *" $m "* ]] && lack+=("$m"); done
  [ ${#lack[@]} -eq 0 ] && return 0
  echo "$name: skipped, missing ${lack[*]}" | tee -a "$OUT/summary.txt"
  status=1
  return 1
}

# 1. what this machine has: nothing is installed, what is missing is reported
nvidia-smi > "$OUT/env.txt" 2>&1
t0=$SECONDS
MISSING="$(timeout 15 "$PY" - 2>>"$OUT/env.txt" <<'PYEOF'
import importlib, sys
mods = ["torch", "triton", "pytest", "yaml", "matplotlib", "lightning", "torchmetrics", "torchvision",
        "jsonargparse", "docstring_parser", "typeshed_client"]
missing = []
for m in mods:
    try:
        v = getattr(importlib.import_module(m), "__version__", "?")
        print(f"{m} {v}", file=sys.stderr)
    except Exception as e:
        print(f"{m} MISSING ({type(e).__name__}: {e})", file=sys.stderr)
        missing.append(m)
if "torch" not in missing:
    import torch
    print(f"python {sys.version.split()[0]}; cuda {torch.version.cuda}; device "
          f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}", file=sys.stderr)
print(" ".join(missing))
PYEOF
)"
rc=$?
echo "imports: exit $rc, $((SECONDS - t0)) s${MISSING:+, missing: $MISSING}" | tee -a "$OUT/summary.txt"
[ "$rc" -eq 0 ] || { status=1; MISSING="${MISSING:-torch}"; }
[[ " $MISSING " == *" triton "* ]] && echo "WARNING: no triton: the ops run their torch reference, not the kernels" \
  | tee -a "$OUT/summary.txt"
echo "MANUAL_AUTOGRAD_BACKEND=${MANUAL_AUTOGRAD_BACKEND:-auto}" >> "$OUT/env.txt"
TRAIN=(torch lightning torchmetrics torchvision jsonargparse docstring_parser typeshed_client yaml)

# 2. the CUDA tests (the CPU-interpreter kernel tests are the CPU suite's)
needs pytest_cuda torch pytest && step pytest_cuda 140 "$PY" -m pytest -q -m cuda -rs -p no:cacheprovider tests
# 3. fits: fp32 and bf16-mixed, the fast recipe, and the same in CUDA graphs (compile + reduce-overhead)
for prec in fp32:32-true bf16:bf16-mixed; do
  needs "fit_${prec%%:*}" "${TRAIN[@]}" && step "fit_${prec%%:*}" 45 "$PY" -m train fit --config configs/mnist.yaml \
    --trainer.accelerator "$ACCEL" --trainer.precision "${prec#*:}" --trainer.enable_progress_bar false \
    --trainer.default_root_dir "$OUT/fit_${prec%%:*}" "${EXTRA[@]}"
done
needs fit_fast "${TRAIN[@]}" && step fit_fast 40 "$PY" -m train fit --config configs/mnist_fast.yaml \
  --trainer.accelerator "$ACCEL" --trainer.enable_progress_bar false --trainer.default_root_dir "$OUT/fit_fast" "${EXTRA[@]}"
needs fit_fast_graphs "${TRAIN[@]}" && step fit_fast_graphs 70 "$PY" -m train fit --config configs/mnist_fast.yaml \
  --trainer.accelerator "$ACCEL" --model.compile true --model.compile_mode reduce-overhead \
  --trainer.enable_progress_bar false --trainer.default_root_dir "$OUT/fit_fast_graphs" "${EXTRA[@]}"
# 4. the Lightning fit beside a bare loop (train_loop_<device>.{md,json}); manual/torch epoch time
needs train_loop "${TRAIN[@]}" && step train_loop 30 "$PY" -m benchmarks.train_loop --device "$ACCEL" --rounds 2 \
  --epochs 3 --out "$OUT"
needs compare_impl "${TRAIN[@]}" && step compare_impl 30 "$PY" scripts/compare_impl.py --config configs/mnist.yaml \
  --rounds 2 --epochs 3 --out "$OUT/compare_impl.json" -- --trainer.accelerator "$ACCEL" "${EXTRA[@]}"
# 5. the benchmarks, #27's cases included: 15 rounds of blocks of >= 5 ms each
needs benchmarks torch matplotlib && step benchmarks 115 "$PY" -m benchmarks --device "$ACCEL" --rounds 15 \
  --min-run-time 0.005 --out "$OUT/benchmarks" ${BENCH_ARGS:-}
# 6. the target ratios (manual / native) of that run
REPORT="$OUT/benchmarks/$ACCEL.json"
if [ -f "$REPORT" ]; then
  step targets 10 "$PY" -m benchmarks --targets "$REPORT"
  cp "$OUT/targets.log" "$OUT/targets.txt"
fi

grep -h -E "Test accuracy|Fit took|ratio manual/torch|Lightning/bare" "$OUT"/fit_*.log "$OUT/compare_impl.log" "$OUT/train_loop.log" 2>/dev/null \
  | tee -a "$OUT/summary.txt"
[ -f "$OUT/targets.txt" ] && { echo "targets (manual / native):"; cat "$OUT/targets.txt"; } | tee -a "$OUT/summary.txt"
exit $status
