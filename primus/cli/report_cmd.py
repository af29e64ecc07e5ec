"""`primus report RUN_DIR`: report.png (training and validation loss, learning rate, throughput,
gradient norm; resume points marked) and report.txt."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a `primus train` run directory")
    parser.add_argument(
        "--out", metavar="FILE", help="where to write the picture (default: RUN_DIR/report.png)"
    )
    parser.epilog = (
        "Reads RUN_DIR/tensorboard (Megatron-Bridge's TensorBoard events) and RUN_DIR/metrics.jsonl;\n"
        "writes RUN_DIR/report.png and RUN_DIR/report.txt and prints the summary. A resumed run\n"
        "reads as one run: the later value for an iteration wins, resume points are marked, and the\n"
        "train time sums the iteration times of every run."
    )
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.set_defaults(func=report)


def report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from primus.report.plot import draw
    from primus.report.run_report import load_run, samples_text, summary_text

    metrics = load_run(args.run_dir)
    text = "\n".join(part for part in (summary_text(metrics), samples_text(metrics.run_dir)) if part)
    picture = Path(args.out) if args.out else metrics.run_dir / "report.png"
    draw(metrics, picture)
    (metrics.run_dir / "report.txt").write_text(text + "\n")
    print(text)
    print(f"report       {picture} and {metrics.run_dir / 'report.txt'}")
    return 0
