"""`primus backends list`: the registered training backends."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="backends_command", metavar="COMMAND", required=True)
    lst = sub.add_parser("list", help="list backends", parents=[parser._primus_parent])  # type: ignore[attr-defined]
    lst.set_defaults(func=list_backends)


def list_backends(args: argparse.Namespace) -> int:
    import primus.backends  # noqa: F401
    from primus.core.backend import BACKENDS
    from primus.core.environment import package_version

    for spec in BACKENDS.specs():
        print(f"{spec.name:18s} {spec.description}")
    version = package_version("megatron-bridge")
    print(f"\nmegatron-bridge installed: {version or 'no (run `make setup`)'}")
    return 0
