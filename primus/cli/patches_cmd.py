"""`primus patches list`: every registered patch, its phase, condition and description."""

from __future__ import annotations

import argparse
import importlib


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="patches_command", metavar="COMMAND", required=True)
    lst = sub.add_parser("list", help="list patches", parents=[parser._primus_parent])  # type: ignore[attr-defined]
    lst.add_argument("--framework", help="only this backend's patches")
    lst.set_defaults(func=list_patches)


def list_patches(args: argparse.Namespace) -> int:
    import primus.backends  # noqa: F401
    from primus.core.backend import BACKENDS
    from primus.core.patches import PATCHES

    specs = [BACKENDS.spec(args.framework)] if args.framework else BACKENDS.specs()
    for spec in specs:
        if spec.patches_module:
            importlib.import_module(spec.patches_module)
    rows = [p for spec in specs for p in PATCHES.list(spec.name)]
    if not rows:
        print("no patches registered")
        return 0
    for patch in rows:
        print(f"{patch.id}  [{patch.backend}, {patch.phase}, {patch.kind}]")
        print(f"    {patch.description}")
        print(f"    applies when: {patch.condition.text}")
    print(f"\n{len(rows)} patches. Disable with `patches: {{disable: [ID]}}` or PRIMUS_PATCHES=-ID.")
    return 0
