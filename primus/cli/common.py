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


def _true_or_word(text: str) -> bool | str:
    return True if text == "true" else text


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
        elif bool in spec.types and spec.choices:  # `--resume` is true, `--resume auto` a choice
            kwargs.update(
                nargs="?",
                const=True,
                type=_true_or_word,
                choices=(True, *spec.choices),
                metavar="|".join(spec.choices),
            )
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


def _optional_value_flags() -> dict[str, tuple[str, ...]]:
    """``--flag`` -> its choices, for boolean flags that may also take a word (``--resume auto``)."""
    out = {}
    for key, spec in PRIMUS_KEYS.items():
        if spec.flag and bool in spec.types and spec.choices:
            for name in {f"--{key}", f"--{key.replace('_', '-')}", *spec.aliases}:
                out[name] = spec.choices
    return out


def _attach_flag_values(argv: Sequence[str]) -> list[str]:
    """``--resume auto`` -> ``--resume=auto``; a bare ``--resume`` -> ``--resume=true``, so an
    override after it (``--resume train.train_iters=40``) is never taken for the flag's value."""
    flags, out, i = _optional_value_flags(), [], 0
    while i < len(argv):
        token = argv[i]
        if token in flags:
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            out.append(f"{token}={nxt}" if nxt in flags[token] else f"{token}=true")
            i += 2 if nxt in flags[token] else 1
            continue
        out.append(token)
        i += 1
    return out


def backend(name: str | None = None):
    """The adapter of backend ``name`` (default: the config's default framework): the one door
    through which a command reaches a backend's recipes, conversion or data preparation."""
    import primus.backends  # noqa: F401  (registers the built-in backends)
    from primus.core.backend import BACKENDS
    from primus.core.config.schema import PRIMUS_KEYS

    return BACKENDS.get(name or PRIMUS_KEYS["framework"].default)


def open_model(args: argparse.Namespace):
    """The model ``--ckpt``/``--hf`` name, through the backend's inference capability (a context
    manager); shared by ``generate`` and ``eval``, whose model flags are the same."""
    return (
        backend()
        .inference()
        .open_model(
            ckpt=args.ckpt,
            hf=args.hf,
            tokenizer=args.tokenizer,
            device=args.device,
            fp32=args.fp32,
            trust_remote_code=args.trust_remote_code,
        )
    )


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


def _launcher_value(*names: str) -> int | None:
    """The first of ``names`` a launcher set to a number (only to filter and tag logs)."""
    for name in names:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return None


def _launcher_node() -> int | None:
    """This node's index in a job of several nodes (torchrun's GROUP_RANK, Slurm's SLURM_NODEID)."""
    nodes = _launcher_value("SLURM_JOB_NUM_NODES", "SLURM_NNODES")
    if "GROUP_RANK" in os.environ:  # torchrun: several nodes when the workers are not all local
        if os.environ.get("LOCAL_WORLD_SIZE") == os.environ.get("WORLD_SIZE"):
            return None
        return _launcher_value("GROUP_RANK")
    return _launcher_value("SLURM_NODEID") if nodes and nodes > 1 else None


def run_command(fn: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Run a command; a user error becomes one clear message and exit code 2."""
    setup_logging(
        _launcher_value("RANK", "SLURM_PROCID") or 0,
        node=_launcher_node(),
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
    args, extras = parser.parse_known_args(_attach_flag_values(sys.argv[1:] if argv is None else argv))
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
