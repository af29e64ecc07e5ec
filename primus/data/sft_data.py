"""Fine-tuning (SFT / LoRA) data: the user's JSONL records, checked before training, staged for Bridge.

Megatron-Bridge's ``GPTSFTDatasetConfig(dataset_root=DIR)`` reads ``DIR/training.jsonl`` and
``DIR/validation.jsonl``, writes ``*.jsonl.idx.npy``/``.idx.info`` caches next to them, and finds a
bad record only when a data-loader worker reaches it, minutes into a run. So Primus reads every
record once before anything starts (:func:`inspect_sft_data`: every bad record as ``FILE:LINE``)
and writes normalised copies into the run directory (:func:`stage_sft_data`). One dataset holds
one format: chat ``{"messages": [{"role": ..., "content": ...}, ...]}`` (rendered with the
tokenizer's chat template, :func:`chat_template_problem`) or ``{"prompt": ..., "completion": ...}``.
Imports neither Megatron nor ``transformers``.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal, cast

from primus.core.errors import PrimusUserError, ProblemCollector

Format = Literal["chat", "prompt_completion"]

KEY = "data_path"
TRAINING = "training.jsonl"
VALIDATION = "validation.jsonl"
#: user files with these names are validation data, every other ``.jsonl`` file is training data
VALIDATION_NAMES = (VALIDATION, "val.jsonl")
ROLES = ("system", "user", "assistant", "tool")
#: Bridge's index caches next to a staged file (stale once the file changes)
CACHE_SUFFIXES = (".idx.npy", ".idx.info")
ONE_RECORD = "one training record cannot be split into training and validation"
ONE_RECORD_HINT = f"give a validation file ({VALIDATION}) or more records"
#: bad records listed one by one; the rest are counted
MAX_LISTED = 10
NOT_JSONL_HINT = "fine-tuning data is .jsonl files or a directory holding training.jsonl, not indexed-dataset prefixes or weights"
FORMATS_HINT = 'write chat records {"messages": [{"role": ..., "content": ...}, ...]} or prompt/completion records {"prompt": ..., "completion": ...}'
_KINDS = {dict: "object", list: "list", str: "string", int: "number", float: "number", bool: "boolean"}


@dataclass(frozen=True)
class SFTData:
    """The user's fine-tuning files, every record read and valid, all in one format."""

    format: Format
    training: tuple[Path, ...]
    """the user's training files, in the order given (staged as one file, in this order)"""
    validation: tuple[Path, ...]
    """the user's validation files; empty: :func:`stage_sft_data` holds training records out"""
    training_records: int
    validation_records: int
    """records in the validation files (0 when there are none)"""


@dataclass(frozen=True)
class StagedSFT:
    """Where Bridge reads the data (``dataset_root``) and how it was split."""

    root: Path
    training_records: int
    validation_records: int
    held_out: bool
    """True when the validation records were held out of the training files"""


def _tokens(data_path: str | os.PathLike | Sequence[str] | None) -> list[str]:
    """The paths in ``data_path``: a list, or a space-separated string (as the key allows)."""
    if data_path is None:
        return []
    items = [data_path] if isinstance(data_path, str | os.PathLike) else data_path
    return [token for item in items for token in str(item).split()]


def is_sft_data_path(data_path: str | list[str] | None) -> bool:
    """True when ``data_path`` names ``.jsonl`` files or a directory (fine-tuning data).

    Anything else is Megatron indexed-dataset prefixes (pretraining). A prefix is never a
    directory, so any directory counts as fine-tuning data: one without ``training.jsonl`` then
    gets an error listing what it holds rather than "no PREFIX.bin".
    """
    return any(t.endswith(".jsonl") or Path(t).expanduser().is_dir() for t in _tokens(data_path))


def _kind(value: object) -> str:
    return "null" if value is None else _KINDS.get(type(value), type(value).__name__)


def _listing(directory: Path) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in directory.iterdir())
    names = [n for n in names if not n.startswith(".")]
    if not names:
        return "it is empty"
    more = f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else ""
    return "it holds " + ", ".join(names[:MAX_LISTED]) + more


def _resolve(
    tokens: list[str], problems: ProblemCollector, source: str | None
) -> tuple[list[Path], list[Path]]:
    """Training and validation files from the paths given; a directory gives its training.jsonl
    and validation.jsonl (or val.jsonl)."""
    add = partial(problems.add, key=KEY, source=source)
    training: list[Path] = []
    validation: list[Path] = []
    for token in tokens:
        path = Path(token).expanduser()
        if path.is_dir():
            if not (path / TRAINING).is_file():
                hint = f"name the files {TRAINING} and {VALIDATION}, or give the .jsonl files themselves"
                add(f"directory {path} holds no {TRAINING} ({_listing(path)})", hint=hint)
                continue
            training.append(path / TRAINING)
            validation += [path / n for n in VALIDATION_NAMES if (path / n).is_file()][:1]
        elif not path.name.endswith(".jsonl"):
            add(f"{token!r} is not a .jsonl file", hint=NOT_JSONL_HINT)
        elif not path.is_file():
            add(f"{path} does not exist")
        else:
            (validation if path.name in VALIDATION_NAMES else training).append(path)
    if validation and not training and not problems:
        names = ", ".join(map(str, validation))
        hint = f"add the training .jsonl files (any name but {' / '.join(VALIDATION_NAMES)})"
        add(f"no training file: {names} are validation files (by their names)", hint=hint)
    return training, validation


def _record_problem(record: Any) -> tuple[Format | None, str | None, str]:
    """``(format, first problem or None, key of the problem)`` for one parsed record."""
    if not isinstance(record, dict):
        return None, f"not a JSON object (a {_kind(record)})", ""
    if "messages" in record:
        return "chat", *_chat_problem(record["messages"])
    if "prompt" in record or "completion" in record:
        for name in ("prompt", "completion"):
            if name not in record:
                return "prompt_completion", f"no {name!r}", name
            if not isinstance(record[name], str):
                return "prompt_completion", f"{name} must be a string, not a {_kind(record[name])}", name
            if not record[name].strip():
                return "prompt_completion", f"{name} is empty", name
        return "prompt_completion", None, ""
    found = ", ".join(map(repr, record)) or "none"
    return None, f"neither 'messages' (chat) nor 'prompt' and 'completion' (found keys: {found})", ""


def _chat_problem(messages: Any) -> tuple[str | None, str]:
    if not isinstance(messages, list) or not messages:
        return "messages must be a non-empty list of turns", "messages"
    for i, turn in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(turn, dict):
            return f"a turn must be an object with role and content, not a {_kind(turn)}", where
        if turn.get("role") not in ROLES:
            got = repr(turn["role"]) if "role" in turn else "missing"
            return f"role {got} is not one of {', '.join(ROLES)}", f"{where}.role"
        if not isinstance(turn.get("content"), str):
            got = f"a {_kind(turn['content'])}" if "content" in turn else "missing"
            return f"content must be a string, not {got}", f"{where}.content"
    if not any(turn["role"] == "assistant" for turn in messages):
        return "no assistant turn (nothing to learn from)", "messages"
    return None, ""


def _normalised(fmt: Format, record: dict) -> str:
    """The record as Bridge reads it: only the format's keys, on one line."""
    keep = ("messages",) if fmt == "chat" else ("prompt", "completion")
    return json.dumps({k: record[k] for k in keep}, ensure_ascii=False)


def _read(
    files: Sequence[Path], problems: ProblemCollector, source: str | None, *, keep: bool
) -> tuple[Format | None, list[list[str]], list[int]]:
    """Reads every record once: ``(format, normalised lines per file (when keep), records per file)``.

    Problems go to ``problems``: the first MAX_LISTED bad records, a count of the rest, and
    records in two formats.
    """
    first: dict[Format, str] = {}  # where the first record of each format is
    bad: list[str] = []
    lines: list[list[str]] = []
    counts: list[int] = []
    for path in files:
        kept: list[str] = []
        count = 0
        with path.open("rb") as f:
            for number, raw in enumerate(f, start=1):
                if not raw.strip():
                    continue
                try:
                    record = json.loads(raw)
                except UnicodeDecodeError:
                    bad.append(f"{path}:{number}: not UTF-8 text")
                    continue
                except json.JSONDecodeError as exc:
                    bad.append(f"{path}:{number}: not valid JSON ({exc.msg})")
                    continue
                fmt, problem, key = _record_problem(record)
                if fmt is not None:
                    first.setdefault(fmt, f"{path}:{number}")
                if problem is not None:
                    bad.append(f"{path}:{number}: {problem}" + (f" (key {key!r})" if key else ""))
                    continue
                count += 1
                if keep and fmt is not None:
                    kept.append(_normalised(fmt, record))
        lines.append(kept)
        counts.append(count)
    add = partial(problems.add, key=KEY, source=source)
    for line in bad[:MAX_LISTED]:
        add(line)
    if len(bad) > MAX_LISTED:
        add(f"... and {len(bad) - MAX_LISTED} more bad records")
    if len(first) > 1:
        mixed = (
            f"chat (first at {first['chat']}) and prompt/completion (first at {first['prompt_completion']})"
        )
        add(f"records mix formats: {mixed}", hint="use one format in every file")
    return next(iter(first), None), lines, counts


def inspect_sft_data(data_path: str | list[str], *, source: str | None) -> SFTData:
    """Reads every record of the user's fine-tuning data once, before training starts.

    Raises one :class:`PrimusUserError` (key ``data_path``, from ``source``) listing every problem:
    missing files, a directory without training.jsonl, bad records as ``FILE:LINE: problem (key
    'messages[2].role')``, mixed formats, files without records.
    """
    problems = ProblemCollector()
    add = partial(problems.add, key=KEY, source=source)
    tokens = _tokens(data_path)
    if not tokens:
        raise PrimusUserError("no fine-tuning data given", key=KEY, source=source)
    training, validation = _resolve(tokens, problems, source)
    problems.raise_if_any(PrimusUserError)
    fmt, _, counts = _read([*training, *validation], problems, source, keep=False)
    n_train, n_val = sum(counts[: len(training)]), sum(counts[len(training) :])
    if not problems:
        if n_train == 0:
            add(f"no records in {', '.join(map(str, training))}", hint=FORMATS_HINT)
        elif validation and n_val == 0:
            add(f"no records in validation file {', '.join(map(str, validation))}")
        elif not validation and n_train == 1:
            add(ONE_RECORD, hint=ONE_RECORD_HINT)
    problems.raise_if_any(PrimusUserError)
    return SFTData(cast(Format, fmt), tuple(training), tuple(validation), n_train, n_val)


def read_records(
    files: Sequence[Path], *, key: str = KEY, source: str | None = None
) -> tuple[Format, list[str]]:
    """Every record of ``files``, in order, as the normalised JSON line Bridge reads (``primus eval``).

    Checked as :func:`inspect_sft_data` checks them: one :class:`PrimusUserError` naming ``key``
    lists every bad record as ``FILE:LINE``, records of two formats, or files without records.
    """
    problems = ProblemCollector()
    fmt, lines, counts = _read(list(files), problems, source, keep=True)
    if not problems and not sum(counts):
        problems.add(f"no records in {', '.join(map(str, files))}", hint=FORMATS_HINT)
    if problems:
        raise PrimusUserError([replace(p, key=key) for p in problems.problems])
    return cast(Format, fmt), [line for per_file in lines for line in per_file]


def chat_template_problem(tokenizer_dir: str, chat_template_path: str | None) -> str | None:
    """None when chat records can be rendered: a template file is given (and exists, non-empty) or
    the tokenizer has a ``chat_template``; else one line saying what is missing and the fix.

    Checked before training because Bridge only fails on it when the first batch is built.
    """
    if chat_template_path:
        path = Path(chat_template_path).expanduser()
        if not path.is_file():
            return f"chat template file {path} does not exist"
        if not path.read_text(encoding="utf-8", errors="replace").strip():
            return f"chat template file {path} is empty"
        return None
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"cannot load tokenizer {tokenizer_dir} to check its chat template: {first}"
    if getattr(tokenizer, "chat_template", None):
        return None
    return (
        f"tokenizer {tokenizer_dir} has no chat template to render chat ('messages') records: "
        'give one with --chat_template FILE.jinja, or write prompt/completion records {"prompt": ..., "completion": ...}'
    )


def unended_turn_warning(tokenizer_dir: str, chat_template_path: str | None) -> str | None:
    """A warning when the template does not end an assistant turn with the end-of-text token.

    The model then never learns to emit that token after an answer, and ``generate()``, which
    stops on it, runs on past the answer. None when the turn ends with it (or no check is possible).
    """
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        if chat_template_path:
            tokenizer.chat_template = Path(chat_template_path).expanduser().read_text(encoding="utf-8")
        eos = tokenizer.eos_token
        turns = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "ANSWER"}]
        rendered = tokenizer.apply_chat_template(turns, tokenize=False)
    except Exception:  # a template that needs other inputs: Bridge reports its own errors
        return None
    after = rendered.split("ANSWER", 1)[-1]
    if not eos or eos in after:
        return None
    return (
        f"the chat template ends an assistant turn with {after.strip()[:20]!r}, not the tokenizer's "
        f"end-of-text token {eos!r}: a fine-tuned model will not learn to stop where generate() stops; "
        "end assistant turns with it in the template (or set that token as the tokenizer's eos_token)"
    )


def held_out_count(records: int, validation_fraction: float) -> int:
    """How many of ``records`` training records are held out: the fraction, at least 1, at most n - 1."""
    return min(max(round(validation_fraction * records), 1), records - 1)


def validation_count(data: SFTData, validation_fraction: float) -> int:
    """Records the validation split will hold once staged."""
    if data.validation:
        return data.validation_records
    return held_out_count(data.training_records, validation_fraction) if data.training_records > 1 else 0


def stage_sft_data(
    data: SFTData, dest: Path, *, validation_fraction: float = 0.05, seed: int = 1234
) -> StagedSFT:
    """Writes ``dest/training.jsonl`` and ``dest/validation.jsonl`` (normalised) for Bridge.

    Without validation files, ``round(validation_fraction * n)`` training records (at least 1, at
    most n - 1) chosen with ``seed`` are held out; both files keep the input order. Several ranks
    may call this at once with the same inputs: each file is written to a temporary name and
    renamed, and an identical existing file is left alone so that Bridge's index cache next to
    it stays valid; a changed file is replaced and its stale caches are removed.
    """
    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must be between 0 and 1, got {validation_fraction}")
    dest = Path(dest)
    targets = (dest / TRAINING, dest / VALIDATION)
    inputs = {p.resolve() for p in (*data.training, *data.validation)}
    if any(t.resolve() in inputs for t in targets):
        message = f"cannot stage fine-tuning data into {dest}: it holds the input files"
        raise PrimusUserError(message, key=KEY, hint="stage into the run directory")
    problems = ProblemCollector()
    _, lines, _ = _read([*data.training, *data.validation], problems, None, keep=True)
    problems.raise_if_any(PrimusUserError)  # the files changed since inspect_sft_data
    training = [line for per_file in lines[: len(data.training)] for line in per_file]
    validation = [line for per_file in lines[len(data.training) :] for line in per_file]
    held_out = not data.validation
    if held_out:
        n = len(training)
        if n < 2:
            raise PrimusUserError(ONE_RECORD, key=KEY, hint=ONE_RECORD_HINT)
        k = held_out_count(n, validation_fraction)
        chosen = set(random.Random(seed).sample(range(n), k))
        validation = [line for i, line in enumerate(training) if i in chosen]
        training = [line for i, line in enumerate(training) if i not in chosen]
    dest.mkdir(parents=True, exist_ok=True)
    for target, records in zip(targets, (training, validation), strict=True):
        text = "".join(line + "\n" for line in records)
        # a lone surrogate (a JSON escape such as "\\ud800") goes back out as that escape
        _write_if_changed(target, text.encode("utf-8", "backslashreplace"))
    return StagedSFT(dest, len(training), len(validation), held_out)


def _write_if_changed(path: Path, data: bytes) -> None:
    """Atomic and idempotent: same bytes -> untouched; else replaced, and stale caches removed."""
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    for suffix in CACHE_SUFFIXES:
        Path(f"{path}{suffix}").unlink(missing_ok=True)
