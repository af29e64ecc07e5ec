"""`primus patches list`: every registered patch, its phase, condition and description, and
whether it would apply on this machine (conditions evaluated against the detected environment)."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from primus.core.patches import Patch, PatchContext


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="patches_command", metavar="COMMAND", required=True)
    lst = sub.add_parser("list", help="list patches", parents=[parser._primus_parent])  # type: ignore[attr-defined]
    lst.add_argument("--framework", help="only this backend's patches")
    lst.add_argument(
        "--device",
        choices=("auto", "cuda", "cpu"),
        default="auto",
        help="training device the conditions are evaluated for (default: auto, as `primus train`)",
    )
    lst.set_defaults(func=list_patches)


def verdict(patch: Patch, ctx: PatchContext) -> tuple[bool, str]:
    """(applies, why not) for one patch in this context, as `primus train` would decide."""
    if patch.id in ctx.disabled:
        return False, "disabled by PRIMUS_PATCHES"
    try:
        unmet = patch.condition.unmet(ctx)
    except Exception as exc:  # a condition that needs more than the default config
        return False, f"cannot tell without a config ({type(exc).__name__}: {exc})"
    return unmet is None, f'"{unmet}" does not hold'


@contextlib.contextmanager
def _quiet(enabled: bool):
    """Silence what probing the environment imports (Megatron-Core restates its TE/Apex fallbacks)."""
    if not enabled:
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)


def list_patches(args: argparse.Namespace) -> int:
    import primus.backends  # noqa: F401
    from primus.core.backend import BACKENDS
    from primus.core.config import ResolvedConfig
    from primus.core.environment import detect
    from primus.core.patches import PATCHES, PatchContext, disabled_patch_ids

    specs = [BACKENDS.spec(args.framework)] if args.framework else BACKENDS.specs()
    for spec in specs:
        if spec.patches_module:
            importlib.import_module(spec.patches_module)
    rows = [p for spec in specs for p in PATCHES.list(spec.name)]
    if not rows:
        print("no patches registered")
        return 0
    verdicts = {}
    with _quiet(not args.debug):
        env = detect(args.device)
        for spec in specs:
            disabled, _ = disabled_patch_ids(None, os.environ, PATCHES.ids(spec.name))
            ctx = PatchContext(spec.name, env, config=ResolvedConfig(), disabled=disabled)
            verdicts.update({p.id: verdict(p, ctx) for p in PATCHES.list(spec.name)})
    applying = 0
    for patch in rows:
        applies, why_not = verdicts[patch.id]
        applying += applies
        mark = "[applies here]" if applies else f"[not here: {why_not}]"
        print(f"{patch.id}  [{patch.backend}, {patch.phase}, {patch.kind}]  {mark}")
        print(f"    {patch.description}")
        print(f"    applies when: {patch.condition.text}")
    te = "present" if env.has_te else "absent"
    print(
        f"\n{len(rows)} patches, {applying} apply here (training device {env.device}, "
        f"{env.cuda_device_count} CUDA device(s), Transformer Engine {te}; default config)."
    )
    print("Disable with `patches: {disable: [ID]}` or PRIMUS_PATCHES=-ID.")
    return 0
