"""Conditions the Megatron-Bridge patches are keyed on (all read from EnvFacts)."""

from __future__ import annotations

from pathlib import Path

from primus.core.environment import module_importable, package_version
from primus.core.patches import Condition, PatchContext

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
    if "nvidia-resiliency-ext" in versions:
        version = versions["nvidia-resiliency-ext"]
    else:
        version = package_version("nvidia-resiliency-ext")
    if version is None:
        return "absent"
    return "too_old" if _version_tuple(version) < NVRX_MIN else "ok"


TE_ABSENT = Condition(lambda ctx: not ctx.env.has_te, "Transformer Engine absent")
ON_CPU = Condition(lambda ctx: ctx.env.on_cpu, "training device is CPU")
NVRX_UNUSABLE = Condition(
    lambda ctx: nvrx_state(ctx.env.versions) != "ok", "nvidia-resiliency-ext absent or older than 0.6"
)


def helpers_need_make(ctx: PatchContext) -> bool:
    """True where Megatron-Core has its prebuilt dataset helpers but no Makefile to rebuild them."""
    key = "mcore_helpers_need_make"
    if key not in ctx.env.extra:
        import importlib.util

        spec = importlib.util.find_spec("megatron.core")
        datasets = Path(spec.submodule_search_locations[0]) / "datasets" if spec else None
        ctx.env.extra[key] = bool(
            datasets
            and not (datasets / "Makefile").is_file()
            and module_importable("megatron.core.datasets.helpers_cpp")
        )
    return bool(ctx.env.extra[key])


PREBUILT_HELPERS_ONLY = Condition(
    helpers_need_make, "Megatron-Core has prebuilt dataset helpers and no Makefile"
)


def apex_present(ctx: PatchContext) -> bool:
    """Whether NVIDIA Apex is importable (probed once; tests preset ``extra['apex']``)."""
    if "apex" not in ctx.env.extra:
        ctx.env.extra["apex"] = module_importable("apex")
    return bool(ctx.env.extra["apex"])


APEX_ABSENT = Condition(lambda ctx: not apex_present(ctx), "Apex absent")
