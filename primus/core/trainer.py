"""The training lifecycle every backend follows: setup -> init -> run_train -> cleanup."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Any

logger = logging.getLogger(__name__)


class BaseTrainer(ABC):
    """One training run. ``cleanup`` always runs, also when an earlier step raised."""

    def setup(self) -> None:
        """Prepare what the run needs before the framework starts (directories, imports)."""

    @abstractmethod
    def init(self) -> None:
        """Initialise the framework (process groups, model, optimizer, data)."""

    @abstractmethod
    def run_train(self) -> Any:
        """Train; returns a backend-specific result (a summary)."""

    def cleanup(self) -> None:
        """Release resources (process groups, files); must be safe to call after a failure."""


def run_lifecycle(trainer: BaseTrainer) -> Any:
    """Drive ``trainer`` through its lifecycle; cleanup runs even when a step fails.

    A failure inside cleanup after an earlier failure is logged, not raised, so the
    original error is the one the user sees.
    """
    failed = False
    try:
        trainer.setup()
        trainer.init()
        return trainer.run_train()
    except BaseException:
        failed = True
        raise
    finally:
        try:
            trainer.cleanup()
        except Exception:
            if not failed:
                raise
            logger.exception("cleanup failed after an earlier error (the earlier error follows)")
