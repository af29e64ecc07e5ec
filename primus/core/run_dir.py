"""An earlier run in a run directory is moved aside, never overwritten or deleted."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path

from primus.core.run_lock import LOCK_NAME

logger = logging.getLogger(__name__)


def aside_name(path: Path, stamp: str | None = None) -> Path:
    """``runs/x`` -> ``runs/x.old-20261202-010203`` (a counter is added if that exists too)."""
    stamp = stamp or time.strftime("%Y%m%d-%H%M%S")
    candidate = path.with_name(f"{path.name}.old-{stamp}")
    n = 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.old-{stamp}-{n}")
    return candidate


def move_earlier_run_aside(run_dir: Path, outside: Iterable[Path] = ()) -> Path | None:
    """Move ``run_dir``'s contents (not its lock) and ``outside`` paths (e.g. a checkpoint
    directory elsewhere) into ``RUN_DIR.old-TIME``; returns it, or None when there was nothing."""
    entries = [p for p in run_dir.iterdir() if p.name != LOCK_NAME] if run_dir.is_dir() else []
    others = [p for p in outside if p.exists() and run_dir.resolve() not in p.resolve().parents]
    if not entries and not others:
        return None
    aside = aside_name(run_dir)
    aside.mkdir(parents=True)
    for entry in entries:
        entry.rename(aside / entry.name)
    for other in others:
        other.rename(aside / other.name)
    logger.info("--start_over: the earlier run in %s was moved to %s", run_dir, aside)
    return aside
