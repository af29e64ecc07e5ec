"""Pieces every command shares: global flags, config arguments, user-error handling."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from primus.core.config.overrides import is_override, missing_equals
from primus.core.config.schema import PRIMUS_KEYS
from primus.core.errors import PrimusUserError, RunPreempted
from primus.core.logging_setup import setup_logging

logger = logging.getLogger("primus")

OVERRIDES_HELP = """
overrides (after the options, any number):
  section.key=value    set a value (typed by YAML rules: 5, true, [1,2], null)
  +section.key=value   add a key the schema does not know
  ~section.key         delete a key
"""


def global_options(*, for_subcommand: bool = False) -> argparse.ArgumentParser:
    """Options every command accepts (as a parent parser), before or after the command name."""
    parent = argparse.ArgumentParser(add_help=False)
    # A subcommand must not reset what was given before its name: no defaults there.
    default = argparse.SUPPRESS if for_subcommand else False
    parent.add_argument(
        "--debug", action="store_true", default=default, help="debug logging; tracebacks for user errors"
    )
    parent.add_argument(
        "--log-all-ranks", action="store_true", default=default, help="log from every rank, not only rank 0"
    )
    parent.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        default=default,
        help="the full resolved config and every library's log on the console (else in RUN_DIR/primus.log)",
    )
    return parent


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """--config, one flag per Primus key the schema marks as a flag, and trailing overrides
    (shared by train and config show). The schema is the one place a flag is declared."""
    parser.add_argument("--config", metavar="FILE", help="experiment YAML file")
    for key, spec in PRIMUS_KEYS.items():
        if not spec.flag:
            continue
        names = [f"--{key}"] + ([f"--{key.replace('_', '-')}"] if "_" in key else []) + list(spec.aliases)
        kwargs: dict = {"dest": key, "help": spec.doc}
        if spec.types == (bool,):
            kwargs.update(action="store_const", const=True)
        elif spec.choices:
            kwargs.update(choices=spec.choices)
        else:
            kwargs.update(metavar=spec.metavar or "VALUE")
            if list in spec.types:
                kwargs.update(nargs="+")
        parser.add_argument(*names, **kwargs)
    parser.epilog = (parser.epilog or "") + OVERRIDES_HELP
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


#: CLI flags that set top-level Primus keys (flag dest == config key).
FLAG_KEYS = tuple(key for key, spec in PRIMUS_KEYS.items() if spec.flag)


def backend(name: str | None = None):
    """The adapter of backend ``name`` (default: the config's default framework): the one door
    through which a command reaches a backend's recipes, conversion or data preparation."""
    import primus.backends  # noqa: F401  (registers the built-in backends)
    from primus.core.backend import BACKENDS
    from primus.core.config.schema import PRIMUS_KEYS

    return BACKENDS.get(name or PRIMUS_KEYS["framework"].default)


def train_request(args: argparse.Namespace):
    """The TrainRequest for these arguments (flags not given stay None: YAML values win)."""
    from primus.core.runtime import TrainRequest

    flags = {key: getattr(args, key, None) for key in FLAG_KEYS}
    if flags.get("data_path") is not None:
        flags["data_path"] = " ".join(flags["data_path"])
    return TrainRequest(
        config_path=args.config,
        overrides=list(args.overrides),
        flags=flags,
        dry_run=getattr(args, "dry_run", False),
        verbose=getattr(args, "verbose", False) or getattr(args, "full", False),
    )


def _launcher_rank() -> int:
    """The rank a launcher gave this process (only to filter logs; 0 when unknown)."""
    for name in ("RANK", "SLURM_PROCID"):
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 0


def run_command(fn: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Run a command; a user error becomes one clear message and exit code 2."""
    setup_logging(
        _launcher_rank(),
        log_all_ranks=args.log_all_ranks,
        debug=args.debug,
        verbose=getattr(args, "verbose", False),
    )
    try:
        return fn(args) or 0
    except PrimusUserError as exc:
        if args.debug:
            raise
        print(f"primus: error: {exc.render()}", file=sys.stderr)
        return exc.exit_code
    except RunPreempted as exc:
        print(f"primus: stopped: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(
            "primus: interrupted: stopped at once, nothing saved since the last checkpoint", file=sys.stderr
        )
        return 130
    except BrokenPipeError:  # `primus recipes list | head`
        sys.stderr.close()
        return 0


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse options; the remaining ``key=value`` / ``~key`` tokens become ``args.overrides``.

    Overrides may stand anywhere, also after a multi-value option such as ``--data_path``.
    ``section.key value`` (no ``=``) is refused with the override it was meant to be.
    """
    args, extras = parser.parse_known_args(argv)
    overrides = []
    for name in ("data_path",):
        values = getattr(args, name, None)
        if values:
            setattr(args, name, [v for v in values if not is_override(v)] or None)
            overrides += [v for v in values if is_override(v)]
    typos = missing_equals(extras)
    if typos:  # one line, as the user errors are: `section.key value` is an override without `=`
        typed = ", ".join(repr(t) for t, _ in typos)
        meant = " ".join(m for _, m in typos)
        parser.exit(2, f"primus: error: {typed}: overrides are key=value (write {meant})\n")
    unknown = [e for e in extras if not is_override(e)]
    if unknown:
        parser.error("unrecognized arguments: " + " ".join(unknown))
    args.overrides = overrides + [e for e in extras if is_override(e)]
    return args
