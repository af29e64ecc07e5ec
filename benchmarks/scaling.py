"""Primus throughput for several launch shapes (GPUs, TP, DP) of one recipe, in one session.

    python benchmarks/scaling.py --out o.json -- 1:gbs=8 2:gbs=16 2:gbs=8,tp=2

Each spec is ``NPROC:key=value,...`` with keys gbs, mbs, tp, seq, iters. Reports tokens/s
from Bridge's per-interval iteration time (first interval dropped) and the scaling
efficiency of each run against the first one per GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_overhead import primus_train_cmd, run  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--recipe", default="llama32_1b")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("specs", nargs="+")
    a = p.parse_args()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, spec in enumerate(a.specs):
        nproc, _, rest = spec.partition(":")
        opts = {"gbs": 8, "mbs": 4, "tp": 1, "seq": 2048, "iters": 30}
        opts.update({k: int(v) for k, v in (kv.split("=") for kv in rest.split(",") if kv)})
        cmd = primus_train_cmd(
            a.out.parent / f"run_{i}",
            recipe=a.recipe,
            seq=opts["seq"],
            mbs=opts["mbs"],
            gbs=opts["gbs"],
            iters=opts["iters"],
            nproc=int(nproc),
            extra=(f"model.tensor_model_parallel_size={opts['tp']}",),
        )
        r = run(cmd, a.out.parent / f"run_{i}.log")
        tokens = opts["gbs"] * opts["seq"]
        row = {
            "spec": spec,
            "nproc": int(nproc),
            **opts,
            **r,
            "tokens_per_s": tokens / (r["ms_per_iter"] / 1000),
        }
        row["tokens_per_s_per_gpu"] = row["tokens_per_s"] / int(nproc)
        rows.append(row)
        print(json.dumps(row), flush=True)
    base = rows[0]["tokens_per_s_per_gpu"]
    for row in rows:
        row["efficiency_vs_first"] = row["tokens_per_s_per_gpu"] / base
        print(
            f"{row['spec']:24s} {row['tokens_per_s']:10,.0f} tok/s  {row['tokens_per_s_per_gpu']:10,.0f} tok/s/GPU"
            f"  eff {row['efficiency_vs_first']:.3f}  Bridge TFLOP/s/GPU {row['bridge_tflops']}"
        )
    a.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
