"""Vanilla Megatron-Bridge (TE-free local spec) vs Primus's fast path, same seed, same machine.

Runs `primus train --recipe llama32_1b` twice per sequence length: with the performance
patches switched off (PRIMUS_PATCHES=-<perf ids>) and on, alternating; reports tokens/s and
the per-iteration loss difference from metrics.jsonl.

    python benchmarks/fast_path.py --out o.json --seqs 2048 4096
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_overhead import primus_train_cmd, run  # noqa: E402

PERF_PATCHES = ("megatron_bridge.sdpa_attention",)
SHAPES = {2048: (4, 8), 4096: (2, 4)}  # seq -> (micro batch, global batch): 16384 tokens/iteration


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seqs", type=int, nargs="+", default=[2048, 4096])
    p.add_argument("--iters", type=int, default=30)
    a = p.parse_args()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for seq in a.seqs:
        mbs, gbs = SHAPES[seq]
        for system, patches in (("vanilla", ",".join(f"-{x}" for x in PERF_PATCHES)), ("fast", "")):
            run_dir = a.out.parent / f"{system}_{seq}"
            cmd = primus_train_cmd(run_dir, recipe="llama32_1b", seq=seq, mbs=mbs, gbs=gbs, iters=a.iters)
            os.environ["PRIMUS_PATCHES"] = patches
            r = run(cmd, a.out.parent / f"{system}_{seq}.log")
            losses = [
                json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
            ]
            row = {
                "system": system,
                "seq": seq,
                "tokens_per_s": gbs * seq / (r["ms_per_iter"] / 1000),
                **r,
                "losses": losses,
            }
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "losses"}), flush=True)
    os.environ.pop("PRIMUS_PATCHES", None)
    for seq in a.seqs:
        van, fast = (
            next(r for r in rows if r["system"] == s and r["seq"] == seq) for s in ("vanilla", "fast")
        )
        rel = [abs(x - y) / abs(x) for x, y in zip(van["losses"], fast["losses"], strict=False)]
        print(
            f"seq {seq}: vanilla {van['tokens_per_s']:,.0f} tok/s, fast {fast['tokens_per_s']:,.0f} tok/s, "
            f"speed-up {fast['tokens_per_s'] / van['tokens_per_s']:.3f}x, max rel loss diff {max(rel):.2e}"
        )
    a.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
