#!/usr/bin/env bash
# Megatron-Bridge through Primus: eight scenarios.
#
#   examples/run_megatron_bridge.sh                      interactive menu
#   examples/run_megatron_bridge.sh <number|name> [--tiny] [--dry-run] [-- extra primus args]
#
#   1 basic      pretraining configured by hand (llama_7b_pretrain.yaml)
#   2 recipe     a Megatron-Bridge recipe plus overrides (llama3_8b_recipe.yaml)
#   3 hf         HF -> Megatron -> train -> HF in one run (hf_conversion_example.yaml)
#   4 parallel   custom parallelism over several processes (torchrun; TP/PP need GPUs)
#   5 precision  mixed precision: bf16, and FP8 (needs Transformer Engine)
#   6 export     train, then convert the checkpoint to HF with `primus convert export`
#   7 finetune   LoRA on JSONL records -> merged HF model + HF PEFT adapter (llama3_8b_lora.yaml)
#   8 sft        full fine-tuning of Qwen3 on chat records -> HF model (qwen3_sft_chat.yaml)
#
#   --tiny     the *_tiny.yaml siblings: a few iterations of a toy model, runs on a CPU
#   --dry-run  print the resolved config (with sources) and check it; train nothing
#
# Environment: PRIMUS_HF_MODEL (local HF model directory for 3, 6, 7, 8; with --tiny a random
# tiny model is created when unset), RUNS_DIR (default runs/examples), NPROC (scenario 4,
# default 2), DATA_PATH (indexed-dataset prefix; default mock data), SFT_DATA (7, 8: .jsonl
# records or a directory with training.jsonl; with --tiny made-up chat records when unset).
set -euo pipefail
cd "$(dirname "$0")/.."

CONFIGS=examples/configs/megatron_bridge
RUNS_DIR=${RUNS_DIR:-runs/examples}
NPROC=${NPROC:-2}
PY=${PYTHON:-.venv/bin/python}
[[ -x "$PY" ]] || PY=python3
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
NAMES=(basic recipe hf parallel precision export finetune sft)
TINY=0
DRY=()
EXTRA=()

say() { printf '\n== %s\n' "$*"; }
primus() { echo "+ primus $*"; "$PY" -m primus "$@"; }
config() { if ((TINY)); then echo "$CONFIGS/${1}_tiny.yaml"; else echo "$CONFIGS/$1.yaml"; fi; }
has_cuda() { "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; }
has_te() { "$PY" -c 'import transformer_engine.pytorch' 2>/dev/null; }
fresh() { if ((!${#DRY[@]})); then rm -rf "$1"; fi; }  # each run starts from an empty run directory
data_args() { if [[ -n "${DATA_PATH:-}" ]]; then echo "--data_path $DATA_PATH"; fi; }

hf_model() {  # a local HF model directory (PRIMUS_HF_MODEL, or with --tiny a random tiny Llama)
    if [[ -n "${PRIMUS_HF_MODEL:-}" ]]; then echo "$PRIMUS_HF_MODEL"; return; fi
    if ((!TINY)); then
        echo "scenario needs PRIMUS_HF_MODEL=<local HF model directory> (or --tiny)" >&2
        return 2
    fi
    local dir="$RUNS_DIR/tiny_hf_llama"
    if [[ ! -f "$dir/config.json" ]]; then
        "$PY" - "$dir" >&2 <<'PYEOF'
import sys
from pathlib import Path
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from primus.data.tokenizer import train_bpe_tokenizer
torch.manual_seed(0)
train_bpe_tokenizer([Path("README.md").read_text()] * 4, 320, sys.argv[1])
config = LlamaConfig(vocab_size=384, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                     tie_word_embeddings=False)
LlamaForCausalLM(config).save_pretrained(sys.argv[1])
print(f"created a random tiny HF Llama (+ a 320-token BPE tokenizer) in {sys.argv[1]}")
PYEOF
    fi
    echo "$dir"
}

run_basic() {
    say "1 basic pretraining: every option in $(config llama_7b_pretrain)"
    fresh "$RUNS_DIR/basic"
    # shellcheck disable=SC2046
    primus train --config "$(config llama_7b_pretrain)" --run_dir "$RUNS_DIR/basic" $(data_args) "${DRY[@]}" "${EXTRA[@]}"
}

run_recipe() {
    say "2 recipe-based training: llama3_8b recipe + overrides ($(config llama3_8b_recipe))"
    fresh "$RUNS_DIR/recipe"
    # shellcheck disable=SC2046
    primus train --config "$(config llama3_8b_recipe)" --run_dir "$RUNS_DIR/recipe" $(data_args) "${DRY[@]}" "${EXTRA[@]}"
}

run_hf() {
    local hf
    hf=$(hf_model)
    say "3 HF conversion: import $hf, train, export to $RUNS_DIR/hf/hf"
    fresh "$RUNS_DIR/hf"
    PRIMUS_HF_MODEL="$hf" primus train --config "$(config hf_conversion_example)" --run_dir "$RUNS_DIR/hf" \
        --convert_from_hf --hf_model_name_or_path "$hf" --convert_to_hf --hf_export_dir "$RUNS_DIR/hf/hf" \
        "${DRY[@]}" "${EXTRA[@]}"
}

run_parallel() {
    local overrides=()
    if has_cuda; then
        say "4 custom parallelism: $NPROC GPUs, tensor parallel 2 + sequence parallel"
        overrides=(model.tensor_model_parallel_size=2 model.sequence_parallel=true)
    else
        say "4 custom parallelism: no CUDA here, so $NPROC CPU processes data-parallel (gloo); TP/PP/CP need GPUs"
    fi
    fresh "$RUNS_DIR/parallel"
    local cmd=("$PY" -m torch.distributed.run --standalone --nproc_per_node "$NPROC" -m primus.cli.train
        --config "$(config llama_7b_pretrain)" --run_dir "$RUNS_DIR/parallel" "${overrides[@]}")
    if ((${#DRY[@]})); then  # a dry run checks the config once, for the world size torchrun would give
        WORLD_SIZE=$NPROC RANK=0 LOCAL_RANK=0 primus train --config "$(config llama_7b_pretrain)" --run_dir "$RUNS_DIR/parallel" \
            "${overrides[@]}" "${DRY[@]}" "${EXTRA[@]}"
    else
        echo "+ ${cmd[*]} ${EXTRA[*]}"
        "${cmd[@]}" "${EXTRA[@]}"
    fi
}

run_precision() {
    local base rc=0
    base=$(config llama_7b_pretrain)
    if has_cuda; then
        say "5a mixed precision: bf16 (bf16_mixed)"
        fresh "$RUNS_DIR/bf16"
        primus train --config "$base" --run_dir "$RUNS_DIR/bf16" mixed_precision=bf16_mixed "${DRY[@]}" "${EXTRA[@]}"
    else
        say "5a mixed precision: bf16 needs a GPU; on CPU Primus trains in fp32 (dry run shows it)"
        primus train --config "$base" --run_dir "$RUNS_DIR/bf16" mixed_precision=bf16_mixed --dry-run "${EXTRA[@]}" >/dev/null
        echo "bf16_mixed config checked (CPU runs it in fp32)"
    fi
    say "5b mixed precision: FP8 (bf16_with_fp8_delayed_scaling_mixed)"
    if has_te && has_cuda; then
        primus train --config "$base" --run_dir "$RUNS_DIR/fp8" \
            mixed_precision=bf16_with_fp8_delayed_scaling_mixed "${DRY[@]}" "${EXTRA[@]}"
        return
    fi
    primus train --config "$base" --run_dir "$RUNS_DIR/fp8" \
        mixed_precision=bf16_with_fp8_delayed_scaling_mixed --dry-run "${EXTRA[@]}" >/dev/null || rc=$?
    if ((rc == 2)); then
        echo "FP8 skipped: it needs Transformer Engine on a CUDA GPU (not present here);"
        echo "Primus's preflight refused it before any work, as expected (exit 2, message above)."
        return 0
    fi
    return "$rc"
}

run_export() {
    local hf ckpt="$RUNS_DIR/export/checkpoints"
    hf=$(hf_model)
    say "6 checkpoint -> HF: train from $hf, then primus convert export"
    fresh "$RUNS_DIR/export"
    PRIMUS_HF_MODEL="$hf" primus train --config "$(config hf_conversion_example)" --run_dir "$RUNS_DIR/export" \
        --convert_from_hf --hf_model_name_or_path "$hf" convert_to_hf=false "${DRY[@]}" "${EXTRA[@]}"
    if ((${#DRY[@]})); then
        echo "+ primus convert export --ckpt $ckpt --out $RUNS_DIR/export/hf_export --hf-source $hf  (skipped: dry run)"
        return
    fi
    primus convert export --ckpt "$ckpt" --out "$RUNS_DIR/export/hf_export" --hf-source "$hf"
}

tiny_finetune() {  # with --tiny: made-up chat records and random tiny Llama / Qwen3 models with chat templates
    local dir="$RUNS_DIR/tiny_finetune"
    if [[ ! -f "$dir/tiny_hf_qwen3/config.json" ]]; then
        "$PY" - "$dir" >&2 <<'PYEOF'
import sys
from pathlib import Path
import torch
from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM
from tests.finetune_support import make_facts, make_tiny_hf_model, write_chat
out = Path(sys.argv[1])
facts = make_facts(64, 7)  # invented question -> answer pairs
write_chat(facts, out / "chat" / "training.jsonl")
make_tiny_hf_model(out / "tiny_hf_llama", facts)  # its chat template marks assistant tokens
# a Qwen3 with a ChatML template like Qwen's (<|im_start|>role ... <|im_end|>)
tok = AutoTokenizer.from_pretrained(out / "tiny_hf_llama")
tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                     "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
tok.eos_token = "<|im_end|>"
tok.save_pretrained(out / "tiny_hf_qwen3")
torch.manual_seed(0)
config = Qwen3Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=256,
                     tie_word_embeddings=True, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
Qwen3ForCausalLM(config).save_pretrained(out / "tiny_hf_qwen3")
print(f"created {len(facts)} made-up chat records and random tiny HF Llama / Qwen3 models in {out}")
PYEOF
    fi
    echo "$dir"
}

ft_inputs() {  # "<HF model dir> <records>" for scenario 7 (llama) or 8 (qwen3)
    local model=${PRIMUS_HF_MODEL:-} data=${SFT_DATA:-} dir
    if ((!TINY)) && [[ -z "$model" || -z "$data" ]]; then
        echo "scenario needs PRIMUS_HF_MODEL=<local HF model directory> and SFT_DATA=<.jsonl or directory> (or --tiny)" >&2
        return 2
    fi
    if [[ -z "$model" || -z "$data" ]]; then dir=$(tiny_finetune); fi
    echo "${model:-$dir/tiny_hf_$1} ${data:-$dir/chat}"
}

run_finetune() {
    local inputs hf data run="$RUNS_DIR/lora"
    inputs=$(ft_inputs llama)
    read -r hf data <<<"$inputs"
    say "7 LoRA fine-tuning of $hf on $data ($(config llama3_8b_lora))"
    fresh "$run"
    PRIMUS_HF_MODEL="$hf" primus train --config "$(config llama3_8b_lora)" --run_dir "$run" --data_path "$data" \
        "${DRY[@]}" "${EXTRA[@]}"
    echo "merged model (base + adapters): $run/hf"
    echo "LoRA adapter (HF PEFT):          $run/hf_adapter"
    local load="from transformers import AutoModelForCausalLM
from peft import PeftModel
model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained('$hf'), '$run/hf_adapter')"
    printf 'load the adapter onto the base model with peft:\n%s\n' "$load"
    if ((${#DRY[@]})); then return; fi
    "$PY" -c "$load
print('adapter loaded:', type(model).__name__, 'rank', model.peft_config['default'].r)"
}

run_sft() {
    local inputs hf data run="$RUNS_DIR/sft"
    inputs=$(ft_inputs qwen3)
    read -r hf data <<<"$inputs"
    say "8 full fine-tuning (SFT) of $hf on chat records $data ($(config qwen3_sft_chat))"
    fresh "$run"
    PRIMUS_HF_MODEL="$hf" primus train --config "$(config qwen3_sft_chat)" --run_dir "$run" --data_path "$data" \
        "${DRY[@]}" "${EXTRA[@]}"
    echo "fine-tuned HF model: $run/hf"
}

run_scenario() {
    case "$1" in
        1 | basic) run_basic ;;
        2 | recipe) run_recipe ;;
        3 | hf) run_hf ;;
        4 | parallel) run_parallel ;;
        5 | precision) run_precision ;;
        6 | export) run_export ;;
        7 | finetune) run_finetune ;;
        8 | sft) run_sft ;;
        *)
            echo "unknown scenario '$1'; choose 1-8 or one of: ${NAMES[*]}" >&2
            return 2
            ;;
    esac
}

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; }

scenario=""
while (($#)); do
    case "$1" in
        --tiny) TINY=1 ;;
        --dry-run) DRY=(--dry-run) ;;
        -h | --help) usage; exit 0 ;;
        --) shift; EXTRA=("$@"); break ;;
        -*) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
        *) scenario=$1 ;;
    esac
    shift
done

if [[ -z "$scenario" ]]; then
    echo "Primus + Megatron-Bridge examples"
    PS3="scenario (1-8, Ctrl-D to quit): "
    select choice in "${NAMES[@]}"; do
        if [[ -n "$choice" ]]; then scenario=$choice; break; fi
    done
    [[ -n "$scenario" ]] || exit 0
    read -r -p "tiny CPU version? [Y/n] " answer
    [[ "$answer" =~ ^[Nn] ]] || TINY=1
fi
mkdir -p "$RUNS_DIR"
run_scenario "$scenario"
