#!/usr/bin/env bash
# The whole suite under another torch than the one in .venv (the package declares torch>=2.4):
#
#   scripts/test_other_torch.sh TORCH_VERSION TORCHVISION_VERSION [pytest args]
#   scripts/test_other_torch.sh 2.11.0 0.26.0      # the GPU image's torch
#
# Creates .venv-torch-TORCH_VERSION once, installing that torch, its torchvision and the project
# with its train and test extras from the package index (torch with its CUDA libraries is several
# GB), then runs pytest there on real MNIST (../shared/data, or $MNIST_ROOT).
set -euo pipefail
TORCH="${1:?usage: scripts/test_other_torch.sh TORCH_VERSION TORCHVISION_VERSION [pytest args]}"
TV="${2:?usage: scripts/test_other_torch.sh TORCH_VERSION TORCHVISION_VERSION [pytest args]}"
shift 2
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv-torch-$TORCH"
if [ ! -x "$VENV/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$VENV"
fi
if [ "$("$VENV/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null)" != "$TORCH" ]; then
  "$VENV/bin/python" -m pip install -q "torch==$TORCH" "torchvision==$TV"
fi
"$VENV/bin/python" -m pip install -q -e "$ROOT[train,test]"
export MNIST_ROOT="${MNIST_ROOT:-$(cd "$ROOT/.." && pwd)/shared/data}"
cd "$ROOT"
"$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
