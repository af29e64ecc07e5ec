"""`primus train` (also `python -m primus.cli.train` / `torchrun -m primus.cli.train`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from primus.cli.common import add_config_arguments, global_options, parse, run_command, train_request


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument(
        "--dry-run",
        "--dry_run",
        dest="dry_run",
        action="store_true",
        help="build and validate the config, print its summary, train nothing",
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="with --dry-run: the whole config tree, every value with its source",
    )


def run(args: argparse.Namespace) -> int:
    import primus.backends  # noqa: F401  (registers the built-in backends)
    from primus.core.runtime import train

    train(train_request(args))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="primus train", description="Train a model.", parents=[global_options()]
    )
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(build_parser(), argv)
    return run_command(run, args)


if __name__ == "__main__":
    sys.exit(main())
