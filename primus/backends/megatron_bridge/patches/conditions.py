"""Conditions the Megatron-Bridge patches are keyed on (all read from EnvFacts)."""

from __future__ import annotations

from primus.core.environment import module_importable, package_version
from primus.core.patches import Condition

#: Megatron-Core 0.19 asserts nvidia-resiliency-ext >= 0.6 when the package is present.
NVRX_MIN = (0, 6)


def _version_tuple(text: str | None) -> tuple[int, ...]:
    parts = []
    for piece in (text or "").split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def nvrx_state(versions: dict[str, str | None]) -> str:
    """'absent', 'too_old' or 'ok' for nvidia-resiliency-ext."""
    version = versions.get("nvidia-resiliency-ext", package_version("nvidia-resiliency-ext"))
    if version is None or not module_importable("nvidia_resiliency_ext"):
        return "absent"
    return "too_old" if _version_tuple(version) < NVRX_MIN else "ok"


TE_ABSENT = Condition(lambda ctx: not ctx.env.has_te, "Transformer Engine absent")
ON_CPU = Condition(lambda ctx: ctx.env.on_cpu, "training device is CPU")
NVRX_UNUSABLE = Condition(
    lambda ctx: nvrx_state(ctx.env.versions) != "ok", "nvidia-resiliency-ext absent or older than 0.6"
)
