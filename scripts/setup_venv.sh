#!/usr/bin/env bash
# Create/refresh the project's virtual environment (.venv, CPython 3.12) with the pinned stack:
#   1. torch==2.11.0 (PyPI's default build: a CUDA build that also runs on CPU-only machines)
#   2. requirements/lock.txt + requirements/dev.txt + requirements/tracking.txt (the optional W&B /
#      MLflow extra) + requirements/eval.txt (the optional lm-evaluation-harness extra): the tests
#      exercise both
#   3. requirements/megatron.txt with --no-deps (Megatron-Bridge's own dependencies don't resolve)
#   4. the project itself, editable, --no-deps
# Idempotent: a stamp in .venv holds a hash of the requirement files, pyproject.toml and this script;
# when it matches, nothing is done.
#
# Usage: bash scripts/setup_venv.sh        (env: PRIMUS_PYTHON=/path/to/python3.12 to pick the interpreter,
#                                           PRIMUS_VENV=dir to use another venv directory)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${PRIMUS_VENV:-$ROOT/.venv}"
STAMP="$VENV/.primus-setup.stamp"
TORCH_VERSION="2.11.0"
INPUTS=(requirements/lock.txt requirements/dev.txt requirements/tracking.txt requirements/eval.txt
    requirements/megatron.txt pyproject.toml scripts/setup_venv.sh)
START=$SECONDS

log() { printf '[setup_venv] %s\n' "$*"; }
die() { printf '[setup_venv] error: %s\n' "$*" >&2; exit "${2:-1}"; }

for f in "${INPUTS[@]}"; do
    [[ -f "$f" ]] || die "missing $ROOT/$f"
done

is_py312() { [[ -x "$1" ]] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; }

# Newest 3.12.x under a pyenv "versions" directory (prints nothing when there is none).
newest_in() {
    local dir="$1"
    [[ -d "$dir" ]] || return 0
    find "$dir" -maxdepth 1 -name '3.12.*' -printf '%f\n' 2>/dev/null | grep -E '^3\.12\.[0-9]+$' \
        | sort -t. -k3,3n | tail -n 1 | sed "s|^|$dir/|; s|\$|/bin/python|"
}

find_python() {
    local cand
    if [[ -n "${PRIMUS_PYTHON:-}" ]]; then
        is_py312 "$PRIMUS_PYTHON" && echo "$PRIMUS_PYTHON"; return
    fi
    cand="$(command -v python3.12 || true)"
    if [[ -n "$cand" ]] && is_py312 "$cand"; then echo "$cand"; return; fi
    if command -v pyenv >/dev/null 2>&1; then
        cand="$(newest_in "$(pyenv root)/versions")"
        if [[ -n "$cand" ]] && is_py312 "$cand"; then echo "$cand"; return; fi
    fi
    for dir in "${PYENV_ROOT:-}/versions" "$HOME/.pyenv/versions" /root/.pyenv/versions; do
        [[ "$dir" == /versions ]] && continue
        cand="$(newest_in "$dir")"
        if [[ -n "$cand" ]] && is_py312 "$cand"; then echo "$cand"; return; fi
    done
    return 1
}

# Hash of everything that defines the environment.
want_hash="$(sha256sum "${INPUTS[@]}" | sha256sum | cut -d' ' -f1)"
if [[ -f "$STAMP" && -x "$VENV/bin/python" ]] && [[ "$(cat "$STAMP")" == "$want_hash" ]] \
    && is_py312 "$VENV/bin/python"; then
    log "$VENV is up to date (stamp ${want_hash:0:12}); nothing to do ($((SECONDS - START))s)"
    exit 0
fi

if [[ -x "$VENV/bin/python" ]] && is_py312 "$VENV/bin/python"; then
    log "updating existing $VENV ($("$VENV/bin/python" -V 2>&1))"
else
    PY="$(find_python)" || die "no Python 3.12 interpreter found: install python3.12 (apt-get install python3.12 python3.12-venv, or 'pyenv install 3.12') or set PRIMUS_PYTHON" 2
    log "creating $VENV with $PY ($("$PY" -V 2>&1))"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV" || die "'$PY -m venv' failed (on Debian/Ubuntu: apt-get install python3.12-venv)"
fi
rm -f "$STAMP"

pip_install() { "$VENV/bin/python" -m pip --disable-pip-version-check -q install "$@"; }

log "[1/4] torch==$TORCH_VERSION ($((SECONDS - START))s)"
pip_install "torch==$TORCH_VERSION" -c requirements/lock.txt

log "[2/4] requirements/lock.txt + dev.txt + tracking.txt + eval.txt ($((SECONDS - START))s)"
pip_install -r requirements/lock.txt -r requirements/dev.txt -r requirements/tracking.txt -r requirements/eval.txt

log "[3/4] requirements/megatron.txt (--no-deps) ($((SECONDS - START))s)"
pip_install --no-deps -r requirements/megatron.txt

log "[4/4] primus (editable, --no-deps) ($((SECONDS - START))s)"
pip_install --no-deps --no-build-isolation -e .

"$VENV/bin/python" - <<'PY'
from importlib.metadata import version
print("[setup_venv] " + ", ".join(f"{n} {version(n)}" for n in ("torch", "transformers", "megatron-core", "megatron-bridge")))
PY

printf '%s\n' "$want_hash" >"$STAMP"
log "done in $((SECONDS - START))s: $VENV"
