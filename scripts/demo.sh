#!/usr/bin/env bash
# `make demo`: train the embedded tiny Llama end to end (CPU in a few minutes, or the GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_DIR=${RUN_DIR:-runs/demo}
start=$(date +%s)
rm -rf "$RUN_DIR"
.venv/bin/primus train --config primus/configs/tiny_llama.yaml --run_dir "$RUN_DIR" "$@"
echo
echo "demo: finished in $(( $(date +%s) - start )) s"
echo "demo: run directory $RUN_DIR (config.yaml with sources, metrics.jsonl, summary.json, tensorboard/, checkpoints/)"
