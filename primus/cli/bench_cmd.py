"""`primus bench`: training throughput of several systems on one workload, side by side."""

from __future__ import annotations

import argparse

DEFAULT_SYSTEMS = ("primus", "megatron_bridge", "hf_eager", "hf_compiled")
FINETUNE_SYSTEMS = ("primus", "hf_peft", "trl")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from primus.bench.systems import SYSTEMS
    from primus.bench.workloads import WORKLOADS

    parser.add_argument(
        "--workload", default="llama32_1b", help=f"one of: {', '.join(WORKLOADS)} (default: llama32_1b)"
    )
    parser.add_argument(
        "--seq", type=int, nargs="+", metavar="N", help="sequence lengths (default: the workload's)"
    )
    parser.add_argument(
        "--systems",
        nargs="+",
        metavar="NAME",
        help=f"systems, the first is the ratio reference (default: {' '.join(DEFAULT_SYSTEMS)}; "
        f"fine-tuning workloads: {' '.join(FINETUNE_SYSTEMS)})",
    )
    parser.add_argument("--steps", type=int, default=30, help="training steps per run (default: 30)")
    parser.add_argument(
        "--warmup", type=int, default=5, help="first steps left out of the throughput (default: 5)"
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs per system, alternating systems (default: 1)"
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cuda", "cpu"),
        default="auto",
        help="cpu: every system trains in fp32 on the same tokens (a check of the harness, not a "
        "performance figure); default: auto",
    )
    parser.add_argument(
        "--data",
        metavar="PREFIX",
        help="train every system on this Megatron indexed dataset (from `primus data prepare`), so "
        "their losses compare; default on a CPU: one synthetic dataset every system reads; on GPUs: "
        "Megatron's mock data, random tokens in the HF loop",
    )
    parser.add_argument(
        "--out",
        default="bench_out",
        metavar="DIR",
        help="results: bench.json, bench.md, logs (default: bench_out)",
    )
    parser.add_argument("--list", action="store_true", help="list workloads and systems, then exit")
    parser.epilog = "systems:\n" + "\n".join(f"  {s.name:16s} {s.description}" for s in SYSTEMS.values())
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.set_defaults(func=bench)


def bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    from primus.bench.runner import BenchRequest, run_bench, table
    from primus.bench.systems import SYSTEMS, get_systems
    from primus.bench.workloads import WORKLOADS, get_workload
    from primus.core.errors import PrimusUserError

    if args.list:
        for w in WORKLOADS.values():
            print(f"workload {w.name:12s} {w.description}; seq {', '.join(map(str, w.default_seqs))}")
        for s in SYSTEMS.values():
            print(f"system   {s.name:16s} {s.description}")
        return 0
    workload = get_workload(args.workload)
    systems = get_systems(args.systems or list(FINETUNE_SYSTEMS if workload.finetune else DEFAULT_SYSTEMS))
    seqs = tuple(args.seq or workload.default_seqs)
    for seq in seqs:
        workload.batch(seq)  # refuse a bad --seq before any run
    for key, value, low in (("--steps", args.steps, args.warmup + 1), ("--repeats", args.repeats, 1)):
        if value < low:
            raise PrimusUserError(
                f"must be at least {low}, got {value}",
                key=key,
                source="cli",
                hint="--steps must exceed --warmup",
            )
    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise PrimusUserError(
                "CUDA is not available here", key="--device", source="cli", hint="use --device cpu"
            )
    if device == "cpu" and not workload.runs_on_cpu:
        raise PrimusUserError(
            f"workload {workload.name!r} needs a GPU (a 1B-parameter model, 16384 tokens per step)",
            key="--workload",
            source="cli",
            hint="on a CPU use --workload tiny",
        )
    data = None
    if args.data and workload.finetune:
        raise PrimusUserError(
            "fine-tuning workloads train on synthetic chat records built for the run, not on --data",
            key="--data",
            source="cli",
            hint=f"leave --data out, or pretrain: --workload {workload.name.rsplit('_', 1)[0]}",
        )
    if args.data:
        from primus.bench.data import check_prefix

        data = check_prefix(args.data, workload.shape.vocab)
    report = run_bench(
        BenchRequest(
            workload,
            seqs,
            tuple(systems),
            args.steps,
            args.warmup,
            args.repeats,
            device,
            Path(args.out),
            data=data,
        )
    )
    print(table(report))
    print(f"\nresults: {Path(args.out) / 'bench.json'}, {Path(args.out) / 'bench.md'}")
    failed = [r for r in report["rows"] if r["status"].startswith("failed")]
    return 1 if failed else 0
