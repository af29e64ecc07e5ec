"""Patches: small, named, conditional adaptations of a backend to an environment.

Each patch has a stable id, the backend it belongs to, a phase, a condition (with a text
that says when it applies) and a one-line description. :func:`run_patches` logs every patch
of a phase as applied or skipped with the reason. Users switch patches off by id in the
config (``patches: {disable: [...]}``) or with ``PRIMUS_PATCHES=-id1,-id2``.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from primus.core.environment import EnvFacts
from primus.core.errors import Problem, did_you_mean

logger = logging.getLogger(__name__)

Phase = Literal["setup", "build_args", "before_train", "after_train"]
PHASES: tuple[str, ...] = ("setup", "build_args", "before_train", "after_train")
KINDS: tuple[str, ...] = ("compat", "perf")
ENV_VAR = "PRIMUS_PATCHES"


@dataclass
class PatchContext:
    """What a patch sees: the environment facts, the user config and the native config."""

    backend: str
    env: EnvFacts
    config: Any = None  # primus.core.config.ResolvedConfig
    native_config: Any = None  # the backend's config object, once built
    disabled: frozenset[str] = frozenset()
    state: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Condition:
    """A predicate on the context plus the text that explains it in logs and listings."""

    check: Callable[[PatchContext], bool]
    text: str
    #: the conditions an ``a & b`` is made of (empty for a single condition)
    parts: tuple[Condition, ...] = ()

    def __call__(self, ctx: PatchContext) -> bool:
        return bool(self.check(ctx))

    def __and__(self, other: Condition) -> Condition:
        parts = (*(self.parts or (self,)), *(other.parts or (other,)))
        return Condition(lambda ctx: self(ctx) and other(ctx), f"{self.text} and {other.text}", parts)

    def unmet(self, ctx: PatchContext) -> str | None:
        """The text of the first part that does not hold here, or None when all hold."""
        return next((c.text for c in self.parts or (self,) if not c(ctx)), None)

    def __invert__(self) -> Condition:
        return Condition(lambda ctx: not self(ctx), f"not ({self.text})")


ALWAYS = Condition(lambda ctx: True, "always")


@dataclass(frozen=True)
class Patch:
    id: str
    backend: str
    phase: str
    description: str
    apply: Callable[[PatchContext], None]
    condition: Condition = ALWAYS
    kind: str = "compat"


@dataclass(frozen=True)
class PatchOutcome:
    patch_id: str
    applied: bool
    reason: str


class PatchRegistry:
    """id -> Patch; a duplicate id raises, a failed lookup lists the close ids."""

    def __init__(self) -> None:
        self._patches: dict[str, Patch] = {}

    def register(self, patch: Patch) -> Patch:
        if patch.id in self._patches:
            raise ValueError(f"patch id {patch.id!r} is already registered")
        if patch.phase not in PHASES:
            raise ValueError(f"patch {patch.id!r}: unknown phase {patch.phase!r}; valid: {', '.join(PHASES)}")
        if patch.kind not in KINDS:
            raise ValueError(f"patch {patch.id!r}: unknown kind {patch.kind!r}; valid: {', '.join(KINDS)}")
        self._patches[patch.id] = patch
        return patch

    def get(self, patch_id: str) -> Patch:
        if patch_id not in self._patches:
            raise KeyError(f"unknown patch {patch_id!r}; {did_you_mean(patch_id, self._patches)}")
        return self._patches[patch_id]

    def ids(self, backend: str | None = None) -> list[str]:
        return [p.id for p in self.list(backend)]

    def list(self, backend: str | None = None, phase: str | None = None) -> list[Patch]:
        """Patches in registration order (the order they run in), optionally filtered."""
        return [
            p
            for p in self._patches.values()
            if (backend is None or p.backend == backend) and (phase is None or p.phase == phase)
        ]

    def clear(self) -> None:
        self._patches.clear()


PATCHES = PatchRegistry()
#: setup-phase patches change the process (imports, torch.cuda): applied once per process
_PROCESS_APPLIED: weakref.WeakSet[Patch] = weakref.WeakSet()


def register_patch(
    patch_id: str,
    *,
    backend: str,
    phase: Phase,
    description: str,
    condition: Condition = ALWAYS,
    kind: str = "compat",
    registry: PatchRegistry | None = None,
) -> Callable[[Callable[[PatchContext], None]], Callable[[PatchContext], None]]:
    """Decorator: register the function as the body of a patch."""

    def decorate(fn: Callable[[PatchContext], None]) -> Callable[[PatchContext], None]:
        (registry or PATCHES).register(Patch(patch_id, backend, phase, description, fn, condition, kind))
        return fn

    return decorate


def run_patches(
    phase: str, ctx: PatchContext, registry: PatchRegistry | None = None, *, only: Iterable[str] | None = None
) -> list[PatchOutcome]:
    """Apply every patch of ``ctx.backend`` for ``phase`` whose condition holds; log each.

    ``only`` restricts the run to some ids (e.g. the import-level patches a CLI listing needs).
    A patch already applied in this process is not applied twice.
    """
    outcomes = []
    applied = _PROCESS_APPLIED if phase == "setup" else ctx.state.setdefault("applied", set())
    for patch in (registry or PATCHES).list(ctx.backend, phase):
        if only is not None and patch.id not in only:
            continue
        if patch.id in ctx.disabled:
            outcome = PatchOutcome(patch.id, False, "disabled by user")
        elif not patch.condition(ctx):
            outcome = PatchOutcome(patch.id, False, f"condition not met: {patch.condition.text}")
        elif patch in applied:
            outcomes.append(PatchOutcome(patch.id, True, "already applied in this process"))
            continue
        else:
            patch.apply(ctx)
            applied.add(patch)
            outcome = PatchOutcome(patch.id, True, patch.condition.text)
        verb = "applied" if outcome.applied else "skipped"
        logger.debug("patch %s %s (%s): %s", patch.id, verb, outcome.reason, patch.description)
        outcomes.append(outcome)
    ctx.state.setdefault("patch_outcomes", []).extend(outcomes)
    return outcomes


def disabled_patch_ids(
    config_disable: Iterable[str] | None,
    environ: Mapping[str, str],
    known: Iterable[str],
    *,
    config_source: str | None = None,
) -> tuple[frozenset[str], list[Problem]]:
    """The ids to switch off, from the config and ``PRIMUS_PATCHES``; unknown ids are problems.

    ``PRIMUS_PATCHES`` is a comma-separated list of ``-id`` entries (``+id`` re-enables an id
    the config disabled).
    """
    known = set(known)
    problems: list[Problem] = []
    disabled = set()
    for patch_id in config_disable or ():
        if patch_id not in known:
            problems.append(
                Problem(
                    f"unknown patch {patch_id!r}",
                    key="patches.disable",
                    source=config_source,
                    hint=did_you_mean(patch_id, known) + " (see `primus patches list`)",
                )
            )
        disabled.add(patch_id)
    for entry in filter(None, (e.strip() for e in environ.get(ENV_VAR, "").split(","))):
        sign, patch_id = entry[0], entry[1:]
        if sign not in "+-" or not patch_id:
            problems.append(
                Problem(
                    f"malformed entry {entry!r}",
                    key=ENV_VAR,
                    source="environment",
                    hint="write -id to disable a patch, +id to re-enable it",
                )
            )
            continue
        if patch_id not in known:
            problems.append(
                Problem(
                    f"unknown patch {patch_id!r}",
                    key=ENV_VAR,
                    source="environment",
                    hint=did_you_mean(patch_id, known) + " (see `primus patches list`)",
                )
            )
        if sign == "-":
            disabled.add(patch_id)
        else:
            disabled.discard(patch_id)
    return frozenset(disabled), problems
