"""Text corpora for ``primus data prepare``: files and directories -> documents.

* ``.jsonl``: one JSON object per line; the document is the value of ``json_key``.
* ``.txt`` / ``.md`` / ``.py``: the whole file is one document.
* a directory: every file with one of those suffixes under it, recursively, in sorted
  order (hidden files and directories are skipped).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from primus.core.errors import PrimusUserError

TEXT_SUFFIXES = (".txt", ".md", ".py")
JSONL_SUFFIX = ".jsonl"
SUFFIXES = (*TEXT_SUFFIXES, JSONL_SUFFIX)


@dataclass(frozen=True)
class Corpus:
    """The files to read, in order, and how many bytes they hold (for progress and limits)."""

    files: tuple[Path, ...]
    json_key: str = "text"
    max_bytes: int | None = None

    @property
    def total_bytes(self) -> int:
        size = sum(f.stat().st_size for f in self.files)
        return min(size, self.max_bytes) if self.max_bytes else size

    def documents(self) -> Iterator[tuple[str, int]]:
        """Yields ``(text, input_bytes_consumed)``; empty documents are skipped.

        With ``max_bytes``, at most that much input is read: the document that would cross the
        limit is cut there (at a UTF-8 character boundary) and is the last one.
        """
        consumed = 0
        for path in self.files:
            budget = self.max_bytes - consumed if self.max_bytes else None
            for text, nbytes, cut in _read(path, self.json_key, budget):
                consumed += nbytes
                if text.strip():
                    yield text, nbytes
                if cut or (self.max_bytes and consumed >= self.max_bytes):
                    return

    def texts(self) -> Iterator[str]:
        return (text for text, _ in self.documents())


def _utf8_prefix(data: bytes, size: int) -> bytes:
    """``data[:size]``, less a multi-byte character the cut would split."""
    if size >= len(data):
        return data
    while size > 0 and data[size] & 0xC0 == 0x80:  # data[size] continues a character
        size -= 1
    return data[:size]


def _read(path: Path, json_key: str, budget: int | None) -> Iterator[tuple[str, int, bool]]:
    """``(text, bytes read, cut)`` per document, reading at most ``budget`` bytes (None: all);
    ``cut`` marks a document shortened to fit the budget (the last one)."""
    if path.suffix != JSONL_SUFFIX:
        with path.open("rb") as f:
            data = f.read() if budget is None else f.read(budget + 1)
        cut = budget is not None and len(data) > budget
        if cut:
            data = _utf8_prefix(data, budget)
        yield data.decode("utf-8", errors="replace"), len(data), cut
        return
    used = 0
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            over = budget is not None and used + len(raw) > budget
            if not raw.strip():
                yield "", 0 if over else len(raw), over
                if over:
                    return
                used += len(raw)
                continue
            try:
                record = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise PrimusUserError(
                    f"{path}:{number}: not valid JSON ({exc.msg})",
                    hint="a .jsonl file holds one JSON object per line",
                ) from None
            if not isinstance(record, dict) or json_key not in record:
                keys = ", ".join(map(repr, record)) if isinstance(record, dict) else type(record).__name__
                raise PrimusUserError(
                    f"{path}:{number}: no key {json_key!r} (found: {keys})",
                    hint="choose the field that holds the text with --json-key",
                )
            value = record[json_key]
            if not isinstance(value, str):
                raise PrimusUserError(
                    f"{path}:{number}: {json_key!r} is a {type(value).__name__}, not text",
                    hint="choose the field that holds the text with --json-key",
                )
            if over:  # the text of the record, cut to the bytes left
                text = _utf8_prefix(value.encode("utf-8", errors="replace"), budget - used)
                yield text.decode("utf-8"), len(text), True
                return
            used += len(raw)
            yield value, len(raw), False


def find_files(inputs: Sequence[str | os.PathLike]) -> tuple[Path, ...]:
    """Every input file, expanding directories; user errors for missing or empty inputs."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.suffix in SUFFIXES
                and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not found:
                raise PrimusUserError(
                    f"directory {path} holds no {' / '.join(SUFFIXES)} files", key="--input"
                )
            files += found
        elif path.is_file():
            if path.suffix not in SUFFIXES:
                raise PrimusUserError(
                    f"{path}: unsupported file type {path.suffix or '(none)'!r}",
                    key="--input",
                    hint="give " + ", ".join(SUFFIXES) + " files or a directory",
                )
            files.append(path)
        else:
            raise PrimusUserError(f"{path} does not exist", key="--input")
    return tuple(files)


def open_corpus(
    inputs: Sequence[str | os.PathLike], json_key: str = "text", max_bytes: int | None = None
) -> Corpus:
    """A :class:`Corpus` that holds at least one non-empty document."""
    corpus = Corpus(find_files(inputs), json_key, max_bytes)
    if next(corpus.documents(), None) is None:
        names = ", ".join(str(i) for i in inputs)
        raise PrimusUserError(f"no text in {names}: every document is empty", key="--input")
    return corpus


def parse_size(text: str) -> int:
    """``"4M"`` -> 4194304; plain numbers are bytes (K, M, G suffixes, powers of 1024)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    value = text.strip().upper().removesuffix("B")
    scale = units.get(value[-1:], 1)
    number = value[:-1] if value[-1:] in units else value
    try:
        size = int(float(number) * scale)
    except ValueError:
        raise PrimusUserError(f"cannot read {text!r} as a size", hint="e.g. 500K, 4M, 1G") from None
    if size <= 0:
        raise PrimusUserError(f"size {text!r} must be positive")
    return size
