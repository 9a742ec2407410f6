#!/usr/bin/env bash
# The main job: sets up ./.venv if needed, then trains the MNIST MLP (configs/mnist.yaml) and
# prints the test accuracy of the best checkpoint. Extra arguments go to the LightningCLI, e.g.
#   bash scripts/train.sh --model.impl torch        # the same network from torch.nn
#   bash scripts/train.sh --config configs/seed.yaml
source "$(dirname "$0")/env.sh"
exec "$PY" -m train fit --config configs/mnist.yaml "$@"
