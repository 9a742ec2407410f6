#!/usr/bin/env bash
# The test command: sets up ./.venv if needed, then runs the whole suite on CPU.
source "$(dirname "$0")/env.sh"
exec "$PY" -m pytest -q "$@"
