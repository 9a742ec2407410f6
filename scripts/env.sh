# Sourced by scripts/train.sh and scripts/test.sh: creates ./.venv once and installs the project.
# Re-installs only when pyproject.toml changes. Override the interpreter with PYTHON=...
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
if [ ! -x "$PY" ]; then
  "${PYTHON:-python3}" -m venv "$VENV"
fi
STAMP="$VENV/.manual_autograd-installed"
WANT="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  "$PY" -m pip install -q --upgrade pip
  # torch 2.14.1 + torchvision 0.29.1 are the wheels on this machine's disk; an already
  # installed torch >= 2.4 (e.g. on a GPU machine) is kept.
  if ! "$PY" -c "import torch, torchvision" 2>/dev/null; then
    "$PY" -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
  fi
  "$PY" -m pip install -q -e "$ROOT[train,test]"
  echo "$WANT" > "$STAMP"
fi
# Real MNIST lies beside the checkout (../shared/data/MNIST/raw); never downloaded in tests.
export MNIST_ROOT="${MNIST_ROOT:-$(cd "$ROOT/.." && pwd)/shared/data}"
cd "$ROOT"
