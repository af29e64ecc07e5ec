"""Logging configured once per process: a short console story, the whole record in the run dir.

- Console (stderr): Primus's own INFO and up, other libraries' WARNING and up, rank 0 only
  (``--verbose``: every library's INFO; ``--debug``: everything; ``--log-all-ranks``); errors
  from every rank, each line of another rank prefixed with its node and rank (``[primus n1 r3]``).
- ``RUN_DIR/primus.log``: every record at INFO and up from every library, and Primus's DEBUG
  lines (which patch applied or was skipped, and why), including those logged before the run
  directory existed (held in memory until then).
- While a config is being built the console is held: a user error then prints first and alone,
  and the held lines are dropped; on success they are shown.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

_FORMAT = "[primus%(rank_tag)s] %(asctime)s %(levelname)s %(name)s: %(message)s"
_CONSOLE_FORMAT = "[primus%(rank_tag)s] %(asctime)s %(message)s"
_FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
EARLY_RECORDS = 20_000


class _RankFilter(logging.Filter):
    """Rank 0's records (every rank's with ``--log-all-ranks``, errors from any rank); a line
    from another rank says where it comes from: ``[primus r3]``, ``[primus n1 r3]`` on node 1."""

    def __init__(self, rank: int, log_all_ranks: bool, node: int | None = None) -> None:
        super().__init__()
        self.rank = rank
        self.log_all_ranks = log_all_ranks
        where = f" r{rank}" if node is None else f" n{node} r{rank}"
        self.tag = where if log_all_ranks or rank != 0 else ""

    def filter(self, record: logging.LogRecord) -> bool:
        record.rank_tag = self.tag
        return self.rank == 0 or self.log_all_ranks or record.levelno >= logging.ERROR


class _ConsoleLevels(logging.Filter):
    """Primus's INFO; other libraries only from ``third_party_level`` up."""

    def __init__(self, third_party_level: int) -> None:
        super().__init__()
        self.third_party_level = third_party_level

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "primus" or record.name.startswith("primus."):
            return True
        return record.levelno >= self.third_party_level


class _Hold(logging.Filter):
    """Keeps console records back while ``held``; ``release`` shows or drops them."""

    def __init__(self) -> None:
        super().__init__()
        self.held = False
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if self.held:
            self.records.append(record)
            return False
        return True


class _ConsoleFormatter(logging.Formatter):
    """INFO lines carry only the time; warnings and errors say what they are and where from."""

    def __init__(self) -> None:
        super().__init__(_CONSOLE_FORMAT, datefmt="%H:%M:%S")
        self._detailed = logging.Formatter(_FORMAT, datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        if record.levelno >= logging.WARNING or not record.name.startswith("primus"):
            return self._detailed.format(record)
        return super().format(record)


class _EarlyRecords(logging.Handler):
    """The records of a run before its log file exists (the oldest go first past the limit)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: collections.deque[logging.LogRecord] = collections.deque(maxlen=EARLY_RECORDS)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


_HOLD = _Hold()


def _console_handler() -> logging.Handler | None:
    return next((h for h in logging.getLogger().handlers if getattr(h, "_primus", None) == "console"), None)


def setup_logging(
    rank: int = 0,
    *,
    log_all_ranks: bool = False,
    debug: bool = False,
    verbose: bool = False,
    node: int | None = None,
) -> None:
    """Install the console handler and the early-record buffer on the root logger (idempotent)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_primus", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._primus = "console"  # type: ignore[attr-defined]
    handler.setLevel(logging.DEBUG if debug else logging.INFO)
    handler.setFormatter(_ConsoleFormatter() if not debug else logging.Formatter(_FORMAT, datefmt="%H:%M:%S"))
    handler.addFilter(_RankFilter(rank, log_all_ranks, node))
    handler.addFilter(_ConsoleLevels(logging.DEBUG if (debug or verbose) else logging.WARNING))
    _HOLD.held, _HOLD.records = False, []
    handler.addFilter(_HOLD)
    root.addHandler(handler)
    early = _EarlyRecords()
    early._primus = "early"  # type: ignore[attr-defined]
    early.setLevel(logging.DEBUG)
    root.addHandler(early)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    logging.getLogger("primus").setLevel(logging.DEBUG)  # Primus's DEBUG lines reach the log file
    logging.captureWarnings(True)  # warnings.warn -> the py.warnings logger: filtered like the rest


@contextlib.contextmanager
def hold_console(drop_on: tuple[type[BaseException], ...]) -> Iterator[None]:
    """Hold console records back; show them after the block, or drop them if it raises ``drop_on``."""
    if _console_handler() is None or _HOLD.held:
        yield
        return
    _HOLD.held = True
    try:
        yield
    except drop_on:
        _release(show=False)
        raise
    except BaseException:
        _release(show=True)
        raise
    _release(show=True)


def _release(show: bool) -> None:
    records, _HOLD.records, _HOLD.held = _HOLD.records, [], False
    handler = _console_handler()
    if show and handler is not None:
        for record in records:
            handler.handle(record)


def log_to_file(path: Path) -> None:
    """From now on every INFO+ record also goes to ``path``, starting with those logged so far."""
    root = logging.getLogger()
    path.parent.mkdir(parents=True, exist_ok=True)
    file_handler = logging.FileHandler(path, encoding="utf-8")
    file_handler._primus = "file"  # type: ignore[attr-defined]
    file_handler.setLevel(logging.DEBUG)
    file_handler.setFormatter(logging.Formatter(_FILE_FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
    for handler in list(root.handlers):
        if getattr(handler, "_primus", None) == "early":
            for record in handler.records:
                file_handler.handle(record)
            root.removeHandler(handler)
        elif getattr(handler, "_primus", None) == "file":
            root.removeHandler(handler)
            handler.close()
    root.addHandler(file_handler)
