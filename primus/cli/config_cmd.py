"""`primus config show`: the merged config, every leaf annotated with where it came from."""

from __future__ import annotations

import argparse

from primus.cli.common import add_config_arguments, train_request


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="config_command", metavar="COMMAND", required=True)
    show = sub.add_parser(
        "show", help="print the merged config with the source of each value", parents=[parser._primus_parent]
    )  # type: ignore[attr-defined]
    add_config_arguments(show)
    show.add_argument("--no-sources", action="store_true", help="plain YAML without provenance comments")
    show.set_defaults(func=show_config)


def show_config(args: argparse.Namespace) -> int:
    import primus.backends  # noqa: F401  (registers backend specs: their sections are valid keys)
    from primus.core.runtime import resolve_config

    cfg = resolve_config(train_request(args))
    print(cfg.to_yaml(with_sources=not args.no_sources), end="")
    return 0
