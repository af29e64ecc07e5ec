"""``primus eval --data``: which held-out data a path names, checked before any model is loaded.

A ``.jsonl`` file (or a directory holding ``validation.jsonl``, such as a fine-tuning run's
``sft_data``) is fine-tuning records: every record is read and checked here (bad ones as
``FILE:LINE``). Anything else is an indexed-dataset prefix (``PREFIX.bin`` + ``PREFIX.idx``, as
``primus data prepare`` writes them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from primus.core.errors import PrimusUserError
from primus.data.sft_data import VALIDATION_NAMES, read_records

KEY = "--data"


@dataclass(frozen=True)
class HeldOut:
    """Held-out data to score."""

    kind: Literal["sft", "indexed"]
    path: str
    """the ``.jsonl`` file, or the indexed-dataset prefix"""
    chat: bool = False
    records: list[str] = field(default_factory=list)
    """sft: every record as one normalised JSON line"""

    def describe(self, loss_mode: str) -> str:
        if self.kind == "indexed":
            return f"indexed dataset {self.path}"
        if self.chat:
            what = {"assistant": "assistant tokens", "last_turn": "the last assistant turn"}
            return f"{len(self.records)} chat records in {self.path} ({what.get(loss_mode, 'every token')})"
        scored = "every token" if loss_mode == "full" else "completion tokens"
        return f"{len(self.records)} prompt/completion records in {self.path} ({scored})"


def _listing(directory: Path) -> str:
    names = sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))
    return "it holds " + ", ".join(names[:10]) if names else "it is empty"


def _records_file(path: Path) -> Path:
    if path.is_dir():
        found = [path / name for name in VALIDATION_NAMES if (path / name).is_file()]
        if not found:
            raise PrimusUserError(
                f"directory {path} holds no {' or '.join(VALIDATION_NAMES)} ({_listing(path)})",
                key=KEY,
                hint="give the .jsonl file of held-out records itself",
            )
        return found[0]
    if not path.is_file():
        raise PrimusUserError(
            f"{path} does not exist", key=KEY, hint="give a .jsonl file of held-out records"
        )
    return path


def resolve_held_out(value: str) -> HeldOut:
    """The held-out data ``value`` names (see the module docstring)."""
    path = Path(value).expanduser()
    if value.endswith(".jsonl") or path.is_dir():
        file = _records_file(path)
        fmt, records = read_records([file], key=KEY)
        return HeldOut("sft", str(file), chat=fmt == "chat", records=records)
    prefix = value[: -len(path.suffix)] if path.suffix in (".bin", ".idx") else value
    missing = [prefix + ext for ext in (".bin", ".idx") if not Path(prefix + ext).expanduser().is_file()]
    if missing:
        raise PrimusUserError(
            f"{value!r} is neither a .jsonl file nor an indexed-dataset prefix: no {' / '.join(missing)}",
            key=KEY,
            hint="give PREFIX of PREFIX.bin/.idx (primus data prepare) or a .jsonl file of records",
        )
    return HeldOut("indexed", str(Path(prefix).expanduser()))
