#!/usr/bin/env bash
# Download the wheels that an OFFLINE Python 3.12 x86_64 GPU host needs for Primus + Megatron-Bridge,
# when that host already has torch 2.11 and a typical PyTorch image (accelerate, einops, peft,
# safetensors, tensorboard, tqdm, rich, pyyaml, pandas, pyarrow, aiohttp, fsspec, huggingface-hub,
# xxhash, scipy, grpcio, protobuf, psutil, httpx, nvidia-ml-py, sentencepiece, tiktoken, ...).
# Versions come from requirements/lock.txt and requirements/megatron.txt; the only packages pinned
# here are nvidia-resiliency-ext 0.6.0 (manylinux_2_39: installable on the GPU host, not on the
# glibc-2.36 dev box, hence not in lock.txt) and its small dependency defusedxml, and trl 1.16.0
# (`primus bench`'s fine-tuning peer, not a Primus dependency). peft comes at Primus's pin rather
# than the image's version, so the benchmark's LoRA peer runs what the CPU tests ran.
#
# Usage:   bash scripts/offline_wheelhouse.sh [OUT_DIR]     (default: .whl, git-ignored)
# Install on the host (no index, no dependency resolution; shadows the image's transformers 5.17):
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#       --target /tmp/site OUT_DIR/*.whl && export PYTHONPATH=/tmp/site
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_ARG="${1:-.whl}"
case "$OUT_ARG" in
    /*) OUT="$OUT_ARG" ;;
    *) OUT="$ROOT/$OUT_ARG" ;;
esac
LIMIT_MIB=64
START=$SECONDS

log() { printf '[wheelhouse] %s\n' "$*"; }
die() { printf '[wheelhouse] error: %s\n' "$*" >&2; exit 1; }

# Not in the GPU image (or there at a version Megatron-Bridge rejects: transformers 5.17 -> 5.12.1,
# tokenizers 0.23.2 -> 0.22.2). Everything else Megatron imports is already in that image.
PACKAGES=(
    # Megatron itself (requirements/megatron.txt)
    megatron-core megatron-bridge
    # Hugging Face pieces Megatron-Bridge 0.6.2 accepts (transformers>=5.8,<=5.12.1)
    transformers tokenizers datasets dill multiprocess diffusers importlib-metadata
    # config system (antlr4-python3-runtime is built from its sdist below)
    omegaconf hydra-core
    # megatron-energon / multi-storage-client (pulled in by megatron.bridge.training.config)
    megatron-energon multi-storage-client xattr cffi pycparser jsonschema jsonschema-specifications
    referencing rpds-py opentelemetry-api wcmatch bracex lark prettytable wcwidth tzdata
    jmespath rapidyaml deprecation braceexpand filetype mfusepy webdataset
    # nvidia-modelopt (imported unconditionally by megatron.bridge.training.gpt_step, checkpointing, ...)
    nvidia-modelopt pulp pydantic pydantic-core annotated-types typing-inspection
    # `primus bench` fine-tuning peers: HF + peft (LoRA)
    peft
)
EXTRA_PINS=(nvidia-resiliency-ext==0.6.0 defusedxml==0.7.1 trl==1.16.0)
SDIST_ONLY=(antlr4-python3-runtime)

# name==version from the requirement files (names compared case-insensitively, '_' == '-').
pin_of() {
    local name="$1" line
    line="$(sed -E 's/[[:space:]]*#.*$//' "$ROOT/requirements/lock.txt" "$ROOT/requirements/megatron.txt" \
        | tr 'A-Z_' 'a-z-' | grep -E "^${name}==" | head -n 1 || true)"
    [[ -n "$line" ]] || die "$name is not pinned in requirements/lock.txt or requirements/megatron.txt"
    echo "$line"
}

PY="$ROOT/.venv/bin/python"
[[ -x "$PY" ]] || PY="$(command -v python3)" || die "no python3 found"
"$PY" -m pip --version >/dev/null 2>&1 || die "$PY has no pip"
pip_q() { "$PY" -m pip --disable-pip-version-check -q "$@"; }

pins=()
for p in "${PACKAGES[@]}"; do pins+=("$(pin_of "$p")"); done
sdist_pins=()
for p in "${SDIST_ONLY[@]}"; do sdist_pins+=("$(pin_of "$p")"); done

mkdir -p "$OUT"
rm -f "$OUT"/*.whl   # two versions of one package would stop the whole install

PLATFORMS=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
    manylinux1_x86_64 any; do
    PLATFORMS+=(--platform "$tag")
done
DL=(download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp -d "$OUT")

log "downloading ${#pins[@]} pinned wheels into $OUT"
pip_q "${DL[@]}" "${PLATFORMS[@]}" "${pins[@]}"

log "downloading ${EXTRA_PINS[*]} (nvidia-resiliency-ext is manylinux_2_39 only)"
pip_q "${DL[@]}" "${PLATFORMS[@]}" --platform manylinux_2_39_x86_64 "${EXTRA_PINS[@]}"

log "building ${sdist_pins[*]} from its sdist"
pip_q wheel --no-deps -w "$OUT" "${sdist_pins[@]}"

count=$(find "$OUT" -maxdepth 1 -type f -name '*.whl' | wc -l)
expected=$(( ${#pins[@]} + ${#EXTRA_PINS[@]} + ${#sdist_pins[@]} ))
[[ "$count" -eq "$expected" ]] || die "expected $expected wheels in $OUT, found $count"

bytes=$(find "$OUT" -maxdepth 1 -type f -name '*.whl' -printf '%s\n' | awk '{s += $1} END {print s + 0}')
mib=$(awk -v b="$bytes" 'BEGIN {printf "%.1f", b / 1048576}')
find "$OUT" -maxdepth 1 -type f -name '*.whl' -printf '%s %f\n' | sort -rn \
    | awk '{printf "  %7.2f MiB  %s\n", $1 / 1048576, $2}'
log "$count wheels, $mib MiB in total, in $((SECONDS - START))s: $OUT"
if (( bytes >= LIMIT_MIB * 1048576 )); then
    die "wheelhouse is ${mib} MiB: over the ${LIMIT_MIB} MiB a device call can carry"
fi
