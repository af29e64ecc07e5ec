"""`primus recipes list|show`: the Megatron-Bridge recipes Primus can build offline."""

from __future__ import annotations

import argparse

from primus.cli.common import OVERRIDES_HELP, backend


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parent = parser._primus_parent  # type: ignore[attr-defined]
    sub = parser.add_subparsers(dest="recipes_command", metavar="COMMAND", required=True)
    lst = sub.add_parser("list", help="list recipes (fast: reads only the shipped index)", parents=[parent])
    lst.add_argument("--family", help="only this family (llama, gpt, gemma, qwen, ministral3)")
    lst.set_defaults(func=list_recipes)

    show = sub.add_parser(
        "show",
        help="build a recipe and print its config with the source of each value",
        parents=[parent],
        epilog=OVERRIDES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    show.add_argument(
        "name", metavar="NAME", help="recipe: canonical name, legacy alias or short name (llama32_1b)"
    )
    show.add_argument(
        "--hf_model_name_or_path",
        "--hf-model",
        dest="hf_model_name_or_path",
        metavar="DIR",
        help="local HF model directory whose config.json replaces the recipe's (for recipes not shipped)",
    )
    show.add_argument(
        "--full", action="store_true", help="the whole config tree, every value with its source"
    )
    show.add_argument(
        "--no-sources", action="store_true", help="with --full: plain YAML without provenance comments"
    )
    show.set_defaults(func=show_recipe)


def list_recipes(args: argparse.Namespace) -> int:
    infos = backend().recipes().list_recipes(args.family)
    rows = [("NAME", "FAMILY", "SHORT", "HF CONFIG", "OFFLINE")]
    rows += [
        (
            i.name,
            i.family,
            i.short or "-",
            ", ".join(i.hub_ids) or "-",
            "yes" if i.offline_buildable else "no",
        )
        for i in infos
    ]
    widths = [max(len(row[col]) for row in rows) for col in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1])
    offline = sum(i.offline_buildable for i in infos)
    print(
        f"\n{len(infos)} recipes, {offline} build offline. Also accepted: legacy aliases "
        "(llama3_8b_pretrain_config). Show one: primus recipes show NAME"
    )
    return 0


def show_recipe(args: argparse.Namespace) -> int:
    """The recipe as `primus train --recipe NAME` would build it (same builder, no preflight)."""
    from primus.core.runtime import TrainRequest, build_context

    backend()  # registers the built-in backends before the config names one
    flags = {"recipe": args.name, "hf_model_name_or_path": args.hf_model_name_or_path}
    ctx = build_context(TrainRequest(overrides=list(args.overrides), flags=flags, dry_run=True))
    adapter = backend(ctx.config.get("framework"))
    info = adapter.recipes().resolve_recipe(args.name)
    adapter.prepare_environment(ctx)
    built = adapter.build_config(ctx, preflight_checks=False)
    print(f"# recipe {args.name} -> {info.name} ({info.module})")
    if args.full:
        print(built.view().to_yaml(with_sources=not args.no_sources), end="")
    else:
        print(adapter.summary(ctx, built, with_run_dir=False))
        print("# the whole config, every value with its source: add --full")
    return 0
