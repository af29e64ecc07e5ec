#!/usr/bin/env bash
# Run the whole suite with the project's venv. pytest's exit code 5 ("no tests collected")
# is a failure here: a suite that runs nothing must not look green.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
PY=${VENV:-.venv}/bin/python
"$PY" -m ruff check primus tests benchmarks || exit 1
"$PY" -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "run_tests: pytest collected no tests (exit 5): treating as a failure" >&2
  exit 1
fi
exit "$rc"
