#!/usr/bin/env bash
# `make demo`: train the embedded tiny Llama on real text, end to end, then report on it.
#
#   1. data (first run only, cached): the project's docs/*.md + README + ~4 MB of the Python standard
#      library's sources -> `primus data prepare` (byte-level BPE tokenizer, 4096 tokens)
#   2. `primus train --config primus/configs/tiny_llama_demo.yaml` (CPU in a few minutes, or the GPU)
#   3. `primus report RUN_DIR` -> report.png + report.txt
#
# Environment: RUN_DIR (default runs/demo), PRIMUS_DEMO_DATA (data cache, default
# ~/.cache/primus/demo_data; delete it to prepare again). Extra arguments go to `primus train`.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_DIR=${RUN_DIR:-runs/demo}
PRIMUS_DEMO_DATA=${PRIMUS_DEMO_DATA:-${XDG_CACHE_HOME:-$HOME/.cache}/primus/demo_data}
export PRIMUS_DEMO_DATA
PRIMUS=(.venv/bin/python -m primus)
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
start=$(date +%s)

prefix="$PRIMUS_DEMO_DATA/demo_text"
if [[ -f "$prefix.bin" && -f "$prefix.idx" && -f "${prefix}_tokenizer/tokenizer.json" ]]; then
    echo "demo: reusing the prepared text in $PRIMUS_DEMO_DATA"
else
    stdlib=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['stdlib'])")
    echo "demo: preparing training text (docs/, README.md, Python stdlib sources) in $PRIMUS_DEMO_DATA"
    "${PRIMUS[@]}" data prepare --input docs/*.md README.md "$stdlib" --max-bytes 4M \
        --train-tokenizer 4096 --output-prefix "$prefix"
fi

rm -rf "$RUN_DIR"
"${PRIMUS[@]}" train --config primus/configs/tiny_llama_demo.yaml --run_dir "$RUN_DIR" "$@"
echo
"${PRIMUS[@]}" report "$RUN_DIR"
echo
echo "demo: finished in $(( $(date +%s) - start )) s"
echo "demo: run directory $RUN_DIR (config.yaml with sources, metrics.jsonl, summary.json, tensorboard/, checkpoints/, report.png)"
