"""Checkpoints trained with Primus's attention swap load where that swap cannot be rebuilt.

A checkpoint's ``run_config.yaml`` records the model's layer spec. Under Primus's SDPA or packed
attention patch that spec is a Primus wrapper (a closure, or a spec naming a ``primus.`` class),
which Bridge's ``load_model_config`` refuses to instantiate (not importable, not in its allowlist):
``convert export`` and fine-tuning from such a checkpoint failed. The spec only says how layers
compute, not what the weights are, and every Primus load sets its own TE-free spec afterwards; so
a recorded spec Bridge cannot rebuild is dropped when the run config is read (the provider's
default stands in until then).
"""

from __future__ import annotations

import logging
from typing import Any

from primus.backends.megatron_bridge import NAME
from primus.core.patches import PatchContext, register_patch

logger = logging.getLogger(__name__)
SPEC_KEY = "transformer_layer_spec"


def unportable_target(value: Any) -> str | None:
    """The ``_target_`` of a recorded spec Bridge cannot rebuild (a Primus or local callable)."""
    if isinstance(value, dict):
        target = value.get("_target_")
        if isinstance(target, str) and (target.startswith("primus.") or "<locals>" in target):
            return target
        for item in value.values():
            found = unportable_target(item)
            if found:
                return found
    elif isinstance(value, list):
        for item in value:
            found = unportable_target(item)
            if found:
                return found
    return None


def portable(run_config: dict) -> dict:
    model = run_config.get("model")
    if isinstance(model, dict) and SPEC_KEY in model:
        target = unportable_target(model[SPEC_KEY])
        if target:
            logger.debug("run config: layer spec %s dropped (set again by the loading session)", target)
            del model[SPEC_KEY]
    return run_config


def install() -> None:
    """Wrap Bridge's ``read_run_config`` where its loaders look it up (idempotent)."""
    from megatron.bridge.training import checkpointing
    from megatron.bridge.training.utils import checkpoint_utils

    for module in (checkpoint_utils, checkpointing):
        read = module.read_run_config
        if getattr(read, "_primus_portable", False):
            continue
        module.read_run_config = _portable_reader(read)


def _portable_reader(read):
    def read_run_config(*args: Any, **kwargs: Any) -> dict:
        return portable(read(*args, **kwargs))

    read_run_config._primus_portable = True  # type: ignore[attr-defined]
    read_run_config.__doc__ = read.__doc__
    return read_run_config


@register_patch(
    "megatron_bridge.portable_layer_spec",
    backend=NAME,
    phase="before_train",
    description="a checkpoint's recorded Primus attention spec (not rebuildable by Bridge) is dropped "
    "when its run config is read; conversion sessions install it too",
)
def portable_layer_spec(ctx: PatchContext) -> None:
    install()
