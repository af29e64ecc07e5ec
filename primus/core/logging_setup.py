"""Logging configured once per process: rank 0 logs, other ranks only errors (unless asked)."""

from __future__ import annotations

import logging
import sys

_FORMAT = "[primus%(rank_tag)s] %(asctime)s %(levelname)s %(name)s: %(message)s"


class _RankFilter(logging.Filter):
    def __init__(self, rank: int, log_all_ranks: bool) -> None:
        super().__init__()
        self.rank = rank
        self.log_all_ranks = log_all_ranks

    def filter(self, record: logging.LogRecord) -> bool:
        record.rank_tag = f" r{self.rank}" if self.log_all_ranks else ""
        return self.rank == 0 or self.log_all_ranks or record.levelno >= logging.ERROR


def setup_logging(rank: int = 0, *, log_all_ranks: bool = False, debug: bool = False) -> None:
    """Install one stderr handler on the root logger; idempotent (re-running replaces it)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_primus", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._primus = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%H:%M:%S"))
    handler.addFilter(_RankFilter(rank, log_all_ranks))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
