"""Megatron-Bridge errors that are the user's to fix, as one-line Primus errors.

Some problems can only show once Bridge has built the data (how many sequences packing made,
for instance); Bridge raises them deep in its stack with a traceback. The ones listed here
become a :class:`PrimusUserError` naming the key and the fix, and Bridge's own "Pretrain
failed" log record of them is dropped.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from primus.core.errors import PrimusUserError

_TOO_FEW_SAMPLES = re.compile(
    r"Not enough train samples for a single global batch: train dataset size \((\d+)\) < global batch size \((\d+)\)"
)


def _too_few_samples(match: re.Match) -> PrimusUserError:
    samples, batch = int(match[1]), int(match[2])
    return PrimusUserError(
        f"the training data makes {samples} sequence{'s' if samples != 1 else ''} and one global batch needs {batch}",
        key="train.global_batch_size",
        hint=f"set train.global_batch_size={samples} or less, add records, "
        "or pack_sequences=false (packing puts several records in one sequence)",
    )


#: pattern of Bridge's message -> the Primus error it becomes
KNOWN: list[tuple[re.Pattern, Callable[[re.Match], PrimusUserError]]] = [
    (_TOO_FEW_SAMPLES, _too_few_samples),
]


def user_error(exc: BaseException) -> PrimusUserError | None:
    """The Primus error ``exc`` stands for, or None when it is not a known user mistake."""
    if not isinstance(exc, RuntimeError | ValueError | AssertionError):
        return None
    for pattern, make in KNOWN:
        match = pattern.search(str(exc))
        if match:
            return make(match)
    return None


class DropTranslatedTracebacks(logging.Filter):
    """Bridge's "Pretrain failed" record of an error Primus reports in one line itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return exc is None or user_error(exc) is None
