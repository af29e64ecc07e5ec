"""`primus`: the entry point. Subcommands are imported lazily so `--help` stays fast."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from primus import __version__
from primus.cli.common import global_options, parse, run_command

#: subcommand -> (module, one-line help). A module has add_arguments(parser) and sets func.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("primus.cli.train", "train a model (also: torchrun -m primus.cli.train)"),
    "config": ("primus.cli.config_cmd", "inspect configs: `config show` prints values with their sources"),
    "recipes": (
        "primus.cli.recipes_cmd",
        "list Megatron-Bridge recipes; `recipes show NAME` prints one's config",
    ),
    "data": (
        "primus.cli.data_cmd",
        "prepare training data: `data prepare` tokenizes text into an indexed dataset",
    ),
    "report": (
        "primus.cli.report_cmd",
        "plot a run's loss, learning rate and throughput (report.png + report.txt)",
    ),
    "convert": ("primus.cli.convert_cmd", "HF <-> Megatron checkpoints: convert import|export|verify|list"),
    "generate": (
        "primus.cli.generate_cmd",
        "continue prompts with a checkpoint or HF model (Megatron-Core's inference engine)",
    ),
    "eval": (
        "primus.cli.eval_cmd",
        "loss / perplexity on held-out data and lm-evaluation-harness tasks of a checkpoint or HF model",
    ),
    "bench": (
        "primus.cli.bench_cmd",
        "benchmark training throughput: Primus vs Megatron-Bridge vs plain PyTorch",
    ),
    "patches": ("primus.cli.patches_cmd", "list the compatibility and performance patches"),
    "backends": ("primus.cli.backends_cmd", "list the training backends"),
}


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parent = global_options(for_subcommand=True)
    parser = argparse.ArgumentParser(
        prog="primus",
        description="Primus: one command line and one YAML format for LLM training (backend: Megatron-Bridge).",
        parents=[global_options()],
    )
    parser.add_argument("--version", action="version", version=f"primus {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text, parents=[parent])
        cmd._primus_parent = parent  # type: ignore[attr-defined]
        if name == wanted:  # import only the command being run
            importlib.import_module(module).add_arguments(cmd)
            if name == "train":
                cmd.set_defaults(func=importlib.import_module(module).run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(build_parser(argv), argv)
    return run_command(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
