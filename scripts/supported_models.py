"""Generate README's supported-models tables from the installed Megatron-Bridge and the recipe index.

.venv/bin/python scripts/supported_models.py            # print the tables
.venv/bin/python scripts/supported_models.py --write    # update README.md between the markers
.venv/bin/python scripts/supported_models.py --check    # exit 1 when README.md is stale (a test runs this)
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
README = ROOT / "README.md"
START, END = "<!-- supported-models:start -->", "<!-- supported-models:end -->"
#: architectures whose HF <-> Megatron round trip runs in CI (tests/backends/megatron_bridge/test_hf_conversion.py)
TESTED_IN_CI = {
    "LlamaForCausalLM": "round trip exact, logits max |diff| 1.5e-7",
    "MistralForCausalLM": "round trip exact, logits max |diff| 1.5e-7",
    "Qwen2ForCausalLM": "round trip exact, logits max |diff| 1.8e-7",
    "Qwen3ForCausalLM": "round trip exact, logits max |diff| 2.1e-7",
    "Qwen3MoeForCausalLM": "round trip exact, logits max |diff| 1.8e-7",
    "GemmaForCausalLM": "round trip exact, logits max |diff| 1.2e-7 (zero-centred norm via Primus patch)",
    "Gemma2ForCausalLM": "needs Transformer Engine (its layer spec is built from TE layers): refused without it",
}


def tables() -> str:
    from primus.backends.megatron_bridge.hf_conversion import supported_architectures
    from primus.backends.megatron_bridge.log_noise import quiet_third_party_noise

    quiet_third_party_noise()
    from primus.backends.megatron_bridge.recipes import families, list_recipes

    lines = ["| recipe family | recipes | build offline | short names (`--recipe`) |", "|---|---|---|---|"]
    for family in families():
        recipes = list_recipes(family)
        shorts = sorted(r.short for r in recipes if r.short and r.offline_buildable)
        shown = ", ".join(f"`{s}`" for s in shorts[:6]) + (
            f" and {len(shorts) - 6} more" if len(shorts) > 6 else ""
        )
        offline = sum(r.offline_buildable for r in recipes)
        lines.append(f"| {family} | {len(recipes)} | {offline} | {shown or '-'} |")
    archs = supported_architectures()
    by_kind: dict[str, list[str]] = defaultdict(list)
    for arch in archs:
        kind = (
            "CausalLM"
            if arch.endswith("ForCausalLM")
            else "other (vision-language, conditional generation...)"
        )
        by_kind[kind].append(arch)
    lines += ["", f"HuggingFace architectures the installed Megatron-Bridge converts ({len(archs)}):", ""]
    lines += ["| architecture | Primus CI |", "|---|---|"]
    lines += [f"| `{a}` | {TESTED_IN_CI.get(a, '-')} |" for a in sorted(archs)]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser()
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true")
    mode.add_argument("--check", action="store_true")
    a = p.parse_args()
    text = tables()
    if not (a.write or a.check):
        print(text, end="")
        return 0
    readme = README.read_text()
    head, _, rest = readme.partition(START)
    _, _, tail = rest.partition(END)
    updated = f"{head}{START}\n{text}{END}{tail}"
    if a.check:
        if updated != readme:
            print("README.md's supported-models tables are stale: run scripts/supported_models.py --write")
            return 1
        return 0
    README.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
