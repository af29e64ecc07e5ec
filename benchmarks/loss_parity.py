"""Loss curves of several Primus variants on the same data and initialisation, compared to the first.

    python benchmarks/loss_parity.py --data PREFIX --steps 200 --out parity.json \
        'vanilla;vanilla' 'vanilla_fp32_softmax;vanilla;model.attention_softmax_in_fp32=true' 'fast;'

Each variant is ``NAME;PATCHES[;override...]``: PATCHES is a ``PRIMUS_PATCHES`` value, or
``vanilla`` for every performance patch off (Megatron-Bridge's own TE-free path). All variants
train ``llama32_1b`` (seq 2048, micro batch 4, global batch 8) from the same seed on the same
indexed dataset. Reports the 200-step mean and 20-step window relative differences against the
first variant; writes every loss to --out. The override ``@fused-distributed`` runs the variant
through ``benchmarks/resume_probe.py --fused-distributed`` (fused AdamW under Megatron's
distributed optimizer, which Primus does not ship) to measure what that does to the loss.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from primus.bench.systems import perf_patch_ids  # noqa: E402


def train(run_dir: Path, data: str, steps: int, patches: str, overrides: list[str]) -> list[float]:
    launcher = ["-m", "primus", "train"]
    if "@fused-distributed" in overrides:
        overrides = [o for o in overrides if o != "@fused-distributed"]
        launcher = [str(ROOT / "benchmarks" / "resume_probe.py"), "--fused-distributed", "--"]
    cmd = [
        sys.executable, *launcher, "--recipe", "llama32_1b", "--data_path", data,
        "--run_dir", str(run_dir), "tokenizer.tokenizer_type=NullTokenizer", "tokenizer.vocab_size=128256",
        "dataset.seq_length=2048", "train.micro_batch_size=4", "train.global_batch_size=8",
        f"train.train_iters={steps}", "validation.eval_iters=0", "checkpoint.save=null",
        "scheduler.lr_warmup_iters=20", f"scheduler.lr_decay_iters={steps}", "logger.log_interval=20",
        *overrides,
    ]  # fmt: skip
    if patches == "vanilla":
        patches = ",".join(f"-{i}" for i in perf_patch_ids())
    log = run_dir.with_suffix(".log")
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as f:
        f.write(f"PRIMUS_PATCHES={patches!r} {' '.join(cmd)}\n")
        f.flush()
        proc = subprocess.run(
            cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "PRIMUS_PATCHES": patches}
        )
    if proc.returncode:
        raise SystemExit(f"{run_dir.name} failed (exit {proc.returncode}); see {log}")
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def compare(ref: list[float], other: list[float]) -> dict:
    def rel(a: list[float], b: list[float]) -> float:
        return (statistics.fmean(b) - statistics.fmean(a)) / statistics.fmean(a)

    windows = [rel(ref[i : i + 20], other[i : i + 20]) for i in range(0, len(ref), 20)]
    return {"mean_rel_diff": rel(ref, other), "window20_rel_diff": windows, "last": other[-1]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="indexed-dataset prefix (real text)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("variants", nargs="+", help="NAME;PATCHES[;override...]")
    a = p.parse_args()
    results: dict = {"steps": a.steps, "variants": {}}
    for spec in a.variants:
        name, patches, *overrides = spec.split(";")
        start = time.perf_counter()
        losses = train(a.out.parent / "parity_runs" / name, a.data, a.steps, patches, overrides)
        entry = {
            "patches": patches,
            "overrides": overrides,
            "losses": losses,
            "wall_s": time.perf_counter() - start,
        }
        results["variants"][name] = entry
        ref = next(iter(results["variants"].values()))["losses"]
        entry["vs_first"] = compare(ref, losses)
        windows = " ".join(f"{w:+.2%}" for w in entry["vs_first"]["window20_rel_diff"])
        print(
            f"{name:28s} first {losses[0]:.4f} last {losses[-1]:.4f} mean vs first {entry['vs_first']['mean_rel_diff']:+.2%}"
            f"  windows {windows}  ({entry['wall_s']:.0f} s)",
            flush=True,
        )
        a.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
