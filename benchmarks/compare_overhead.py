"""Primus vs Megatron-Bridge directly, same recipe and shape, runs alternated in one session.

Both runs use Bridge's own training loop, so both print Bridge's per-interval line
("elapsed time per iteration (ms)"); the first interval (warm-up) is dropped and the rest
averaged. Writes JSON to --out and prints a table.

    python benchmarks/compare_overhead.py --seq 2048 --mbs 4 --gbs 8 --iters 30 --repeats 2 --out o.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ITER_MS = re.compile(r"elapsed time per iteration \(ms\): ([0-9.]+)")
TFLOPS = re.compile(r"throughput per GPU \(TFLOP/s/GPU\): ([0-9.]+)")


def primus_train_cmd(
    run_dir: Path,
    *,
    recipe: str,
    seq: int,
    mbs: int,
    gbs: int,
    iters: int,
    nproc: int = 1,
    extra: tuple[str, ...] = (),
) -> list[str]:
    """`torchrun -m primus.cli.train` for a throughput run: no eval, no checkpoint, log every 5."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(nproc),
        "-m",
        "primus.cli.train",
        "--recipe",
        recipe,
        "--run_dir",
        str(run_dir),
        f"dataset.seq_length={seq}",
        f"train.micro_batch_size={mbs}",
        f"train.global_batch_size={gbs}",
        f"train.train_iters={iters}",
        "validation.eval_interval=1000000",
        "validation.eval_iters=0",
        "scheduler.lr_warmup_iters=5",
        f"scheduler.lr_decay_iters={iters}",
        "checkpoint.save=null",
        "logger.log_interval=5",
        "logger.log_throughput=true",
        *extra,
    ]


def run(cmd: list[str], log: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    log.write_text(out.stdout + out.stderr)
    if out.returncode:
        raise SystemExit(f"failed ({out.returncode}): {' '.join(cmd)}\n{(out.stdout + out.stderr)[-4000:]}")
    times = [float(x) for x in ITER_MS.findall(out.stdout + out.stderr)][1:]
    tflops = [float(x) for x in TFLOPS.findall(out.stdout + out.stderr)][1:]
    return {
        "ms_per_iter": statistics.mean(times),
        "intervals": len(times),
        "bridge_tflops": statistics.mean(tflops) if tflops else None,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--recipe", default="llama32_1b")
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--mbs", type=int, default=4)
    p.add_argument("--gbs", type=int, default=8)
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("overhead.json"))
    a = p.parse_args()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    direct = [
        sys.executable,
        "-m",
        "primus.backends.megatron_bridge.bench_direct",
        "--run-dir",
        str(a.out.parent / "direct_run"),
        "--recipe",
        a.recipe,
        "--seq",
        str(a.seq),
        "--mbs",
        str(a.mbs),
        "--gbs",
        str(a.gbs),
        "--iters",
        str(a.iters),
    ]
    primus = primus_train_cmd(
        a.out.parent / "primus_run", recipe=a.recipe, seq=a.seq, mbs=a.mbs, gbs=a.gbs, iters=a.iters
    )
    results = {"direct": [], "primus": []}
    for i in range(a.repeats):
        for name, cmd in (("direct", direct), ("primus", primus)):
            r = run(cmd, a.out.parent / f"{name}_{i}.log")
            print(name, i, r, flush=True)
            results[name].append(r)
    tokens = a.gbs * a.seq
    summary = {}
    for name, rs in results.items():
        ms = statistics.mean(r["ms_per_iter"] for r in rs)
        summary[name] = {
            "ms_per_iter": ms,
            "tokens_per_s": tokens / (ms / 1000),
            "bridge_tflops": statistics.mean(r["bridge_tflops"] or 0 for r in rs),
            "runs": rs,
        }
    summary["primus_over_direct_time"] = summary["primus"]["ms_per_iter"] / summary["direct"]["ms_per_iter"]
    summary["config"] = vars(a) | {"out": str(a.out)}
    a.out.write_text(json.dumps(summary, indent=2))
    for name in ("direct", "primus"):
        s = summary[name]
        print(
            f"{name:8s} {s['ms_per_iter']:8.1f} ms/it {s['tokens_per_s']:10,.0f} tok/s {s['bridge_tflops']:6.1f} TFLOP/s"
        )
    print(f"primus time / direct time = {summary['primus_over_direct_time']:.4f}")


if __name__ == "__main__":
    main()
