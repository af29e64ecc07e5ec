"""The Primus keys of a config file (everything that is not a backend section)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from primus.core.config.resolved import DEFAULT, ResolvedConfig
from primus.core.errors import ProblemCollector, did_you_mean


@dataclass(frozen=True)
class KeySpec:
    """A top-level Primus key: accepted types, default and a one-line description."""

    types: tuple[type, ...]
    default: Any
    doc: str
    choices: tuple[str, ...] | None = None
    #: also a command-line flag (``--key`` and ``--key-with-dashes``, plus ``aliases``)
    flag: bool = False
    metavar: str | None = None
    aliases: tuple[str, ...] = ()


_STR = (str,)
_OPT_STR = (str, type(None))
#: workloads that start from a trained model and read the user's records (JSONL)
FINETUNE_WORKLOADS = ("sft", "lora", "dora")
WORKLOADS = ("pretrain", *FINETUNE_WORKLOADS)
PRIMUS_KEYS: dict[str, KeySpec] = {
    "framework": KeySpec(
        _STR, "megatron_bridge", "training backend (see `primus backends list`)", flag=True, metavar="NAME"
    ),
    "recipe": KeySpec(
        _OPT_STR,
        None,
        "backend recipe to start from, e.g. llama32_1b (see `primus recipes list`)",
        flag=True,
        metavar="NAME",
    ),
    "workload": KeySpec(
        _OPT_STR,
        None,
        "what to run: pretrain, sft (full fine-tuning), lora or dora (adapters); "
        "default: the recipe's (an *_sft_* / *_peft_* recipe fine-tunes), else pretrain",
        WORKLOADS,
        flag=True,
    ),
    "data_path": KeySpec(
        (str, list, type(None)),
        None,
        "pretrain: indexed-dataset prefixes, optionally weighted (0.7 pathA 0.3 pathB; none: mock data); "
        "fine-tuning: JSONL files, or a directory with training.jsonl [validation.jsonl]",
        flag=True,
        metavar="PATH",
    ),
    "chat_template": KeySpec(
        _OPT_STR,
        None,
        "fine-tuning chat records: a Jinja chat template file, for a tokenizer without one",
        flag=True,
        metavar="FILE",
    ),
    "sft_loss": KeySpec(
        _STR,
        "assistant",
        "fine-tuning: the tokens that train: assistant (every assistant turn / the completion), "
        "last_turn (the last assistant turn), full (every token)",
        ("assistant", "last_turn", "full"),
        flag=True,
    ),
    "sft_validation_fraction": KeySpec(
        (float, int),
        0.05,
        "fine-tuning without a validation file: the share of records held out for validation",
    ),
    "pack_sequences": KeySpec(
        (bool, type(None)),
        None,
        "fine-tuning: pack several records into each sequence (default: the recipe's choice, else off)",
    ),
    "hf_model_name_or_path": KeySpec(
        _OPT_STR,
        None,
        "HuggingFace model directory or hub id",
        flag=True,
        metavar="DIR_OR_ID",
        aliases=("--hf-model",),
    ),
    "convert_from_hf": KeySpec((bool,), False, "initialise the model from hf_model_name_or_path", flag=True),
    "convert_to_hf": KeySpec(
        (bool,),
        False,
        "export the trained model as a HuggingFace checkpoint (LoRA: also a PEFT adapter, <dir>_adapter)",
        flag=True,
    ),
    "hf_export_dir": KeySpec(
        _OPT_STR, None, "where convert_to_hf writes (default: <run_dir>/hf)", flag=True, metavar="DIR"
    ),
    "run_dir": KeySpec(
        _OPT_STR,
        None,
        "directory for config, logs, checkpoints and exports (default: runs/<name>)",
        flag=True,
        metavar="DIR",
    ),
    "name": KeySpec(_OPT_STR, None, "experiment name (default: recipe name or config file stem)"),
    "device": KeySpec(
        _STR,
        "auto",
        "where to train: auto (CUDA when present), cuda or cpu",
        ("auto", "cuda", "cpu"),
        flag=True,
    ),
    "resume": KeySpec(
        (bool, str),
        False,
        "continue from the latest checkpoint in checkpoint.load or the run dir; auto: resume when "
        "there is a checkpoint, else start fresh (the default under torchrun --max-restarts)",
        ("auto",),
        flag=True,
    ),
    "start_over": KeySpec(
        (bool,),
        False,
        "the run dir holds an earlier run: move it aside (RUN_DIR.old-TIME, never deleted) and start again",
        flag=True,
    ),
    "trust_remote_code": KeySpec(
        (bool,), False, "allow HuggingFace code from model repos (off unless asked)", flag=True
    ),
    "patches": KeySpec((dict, type(None)), None, "patch switches: {disable: [patch ids]}"),
}


def apply_primus_defaults(cfg: ResolvedConfig) -> None:
    """Fill every missing Primus key with its default (source ``default``); Primus keys first."""
    for key, spec in PRIMUS_KEYS.items():
        if key not in cfg.data:
            cfg.set(key, spec.default, DEFAULT)
    ordered = {key: cfg.data[key] for key in PRIMUS_KEYS}
    ordered.update((key, value) for key, value in cfg.data.items() if key not in PRIMUS_KEYS)
    cfg.data = ordered


def validate_top_level(
    cfg: ResolvedConfig, backend_sections: Iterable[str], problems: ProblemCollector
) -> None:
    """Unknown top-level keys and wrong types of Primus keys, all collected."""
    sections = set(backend_sections)
    valid = set(PRIMUS_KEYS) | sections
    for key, value in cfg.data.items():
        source = cfg.source_of(key)
        if key in PRIMUS_KEYS:
            _check_type(key, value, PRIMUS_KEYS[key], source, problems)
        elif key not in sections and key not in cfg.added:
            problems.add("unknown key", key=key, source=source, hint=did_you_mean(key, valid))
    patches = cfg.data.get("patches")
    if isinstance(patches, dict):
        for sub, value in patches.items():
            if sub != "disable":
                problems.add(
                    "unknown key",
                    key=f"patches.{sub}",
                    source=cfg.source_of(f"patches.{sub}"),
                    hint="valid: disable",
                )
            elif not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                problems.add(
                    "must be a list of patch ids",
                    key="patches.disable",
                    source=cfg.source_of("patches.disable"),
                )


def _check_type(key: str, value: Any, spec: KeySpec, source: str | None, problems: ProblemCollector) -> None:
    if not isinstance(value, spec.types) or (isinstance(value, bool) and bool not in spec.types):
        wanted = " or ".join("null" if t is type(None) else t.__name__ for t in spec.types)
        problems.add(f"expected {wanted}, got {type(value).__name__} {value!r}", key=key, source=source)
    elif spec.choices and isinstance(value, str) and value not in spec.choices:
        valid = ("true", "false", *spec.choices) if bool in spec.types else spec.choices
        problems.add(f"invalid value {value!r}", key=key, source=source, hint="valid: " + ", ".join(valid))
