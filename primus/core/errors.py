"""User-facing errors: one line per problem, naming the key, where it came from and the fix.

A :class:`PrimusUserError` is a mistake the user can fix (bad config, missing file, unknown
key). The CLI prints it without a traceback and exits with :data:`USER_ERROR_EXIT_CODE`.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

USER_ERROR_EXIT_CODE = 2
#: a run stopped by SIGTERM after saving a checkpoint (128 + SIGTERM, as schedulers expect)
PREEMPTED_EXIT_CODE = 143


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the user's input."""

    message: str
    key: str | None = None
    source: str | None = None
    hint: str | None = None

    def __str__(self) -> str:
        where = ""
        if self.key and self.source:
            where = f"{self.key} ({self.source}): "
        elif self.key:
            where = f"{self.key}: "
        elif self.source:
            where = f"{self.source}: "
        text = f"{where}{self.message}"
        if self.hint:
            text += f"; {self.hint}"
        return text


class PrimusUserError(Exception):
    """One or more problems the user must fix; never a bug in Primus."""

    exit_code = USER_ERROR_EXIT_CODE

    def __init__(self, problems: str | Problem | Iterable[Problem], *, key=None, source=None, hint=None):
        if isinstance(problems, str):
            problems = [Problem(problems, key=key, source=source, hint=hint)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        super().__init__(self.render())

    def render(self) -> str:
        if len(self.problems) == 1:
            return str(self.problems[0])
        lines = [f"{len(self.problems)} problems:"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


class ConfigError(PrimusUserError):
    """A problem in the configuration (YAML, overrides or CLI flags)."""


class ProblemCollector:
    """Collects problems so that every mistake is reported at once (not one per run)."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, message: str, *, key=None, source=None, hint=None) -> None:
        self.problems.append(Problem(message, key=key, source=source, hint=hint))

    def extend(self, problems: Iterable[Problem]) -> None:
        self.problems.extend(problems)

    def __bool__(self) -> bool:
        return bool(self.problems)

    def raise_if_any(self, error_cls: type[PrimusUserError] = ConfigError) -> None:
        if self.problems:
            raise error_cls(self.problems)


def closest(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The candidates closest to ``name`` (for "did you mean" hints)."""
    return difflib.get_close_matches(name, list(candidates), n=n, cutoff=0.6)


def did_you_mean(name: str, candidates: Iterable[str], *, list_all_under: int = 12) -> str:
    """A hint for an unknown name: the closest matches, or everything when the list is short."""
    candidates = sorted(set(candidates))
    matches = closest(name, candidates)
    if matches:
        return "did you mean " + " or ".join(repr(m) for m in matches) + "?"
    if len(candidates) <= list_all_under:
        return "valid: " + ", ".join(candidates)
    return f"none of the {len(candidates)} valid names is close"


class RunPreempted(Exception):
    """Training stopped on a signal: after saving a resumable checkpoint, or before it began.

    The exit code is the shell's for that signal (130 for SIGINT, 143 for SIGTERM).
    """

    def __init__(self, message: str, exit_code: int = PREEMPTED_EXIT_CODE) -> None:
        super().__init__(message)
        self.exit_code = exit_code
