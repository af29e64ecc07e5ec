"""``setup`` patches: make ``import megatron.bridge`` and ``pretrain()`` work where they do not.

Each applies only where its condition holds; in an NVIDIA container (TE, CUDA, NVRx present)
none of them does.
"""

from __future__ import annotations

import logging

from primus.backends.megatron_bridge import NAME
from primus.backends.megatron_bridge.patches import import_redirects
from primus.backends.megatron_bridge.patches.conditions import (
    APEX_ABSENT,
    NVRX_UNUSABLE,
    ON_CPU,
    PREBUILT_HELPERS_ONLY,
    TE_ABSENT,
    nvrx_state,
)
from primus.core.patches import PatchContext, register_patch

logger = logging.getLogger(__name__)

#: The only Megatron-Bridge modules that import Transformer Engine without a guard.
TE_UNGUARDED_IMPORTERS = (
    "megatron.bridge.peft",
    "megatron.bridge.models.gpt_full_te_layer_autocast_spec",
)
NVRX_IMPORTER = "megatron.bridge.training.pretrain"

TE_REDIRECT = import_redirects.Redirect(
    "transformer_engine",
    TE_UNGUARDED_IMPORTERS,
    import_redirects.Placeholder("transformer_engine", "Transformer Engine"),
)
NVRX_PLACEHOLDER = import_redirects.Placeholder("nvidia_resiliency_ext", "nvidia-resiliency-ext >= 0.6")
NVRX_REDIRECT = import_redirects.Redirect("nvidia_resiliency_ext", (NVRX_IMPORTER,), NVRX_PLACEHOLDER)
#: with a too-old NVRx installed, Megatron-Core must not see it (it asserts >= 0.6)
NVRX_HIDE = import_redirects.Redirect("nvidia_resiliency_ext", ("megatron.",), None, exempt=(NVRX_IMPORTER,))


@register_patch(
    "megatron_bridge.te_placeholder",
    backend=NAME,
    phase="setup",
    condition=TE_ABSENT,
    description="hand a Transformer Engine placeholder to the 2 Bridge modules that import TE unguarded",
)
def te_placeholder(ctx: PatchContext) -> None:
    import_redirects.install(TE_REDIRECT)


@register_patch(
    "megatron_bridge.nvrx_placeholder",
    backend=NAME,
    phase="setup",
    condition=NVRX_UNUSABLE,
    description="placeholder for training/pretrain.py's unconditional nvidia_resiliency_ext import",
)
def nvrx_placeholder(ctx: PatchContext) -> None:
    import_redirects.install(NVRX_REDIRECT)
    if nvrx_state(ctx.env.versions) == "too_old":
        import_redirects.install(NVRX_HIDE)


@register_patch(
    "megatron_bridge.prebuilt_dataset_helpers",
    backend=NAME,
    phase="setup",
    condition=PREBUILT_HELPERS_ONLY,
    description="use the prebuilt dataset helpers instead of running `make` (the wheel has no Makefile)",
)
def prebuilt_dataset_helpers(ctx: PatchContext) -> None:
    import megatron.bridge.training.initialize as initialize

    def use_prebuilt_helpers() -> None:
        import megatron.core.datasets.helpers_cpp  # noqa: F401  (proves the extension loads)

    initialize.compile_helpers = use_prebuilt_helpers


@register_patch(
    "megatron_bridge.cpu_execution",
    backend=NAME,
    phase="setup",
    condition=ON_CPU,
    description="run pretrain() without CUDA: allow_no_cuda, CUDA calls redirected to CPU, CPU RNG tracker",
)
def cpu_execution(ctx: PatchContext) -> None:
    import functools

    from primus.backends.megatron_bridge.patches import cpu_runtime

    logger.debug(  # the run's summary says it: "precision fp32 (CPU: development / smoke-test mode)"
        "CPU execution: development / smoke-test mode (CUDA calls redirected to the CPU; slow, fp32 only)"
    )
    cpu_runtime.enable()
    import megatron.bridge.training.initialize as initialize
    import megatron.bridge.training.setup as setup
    from megatron.core import tensor_parallel

    if not isinstance(setup.initialize_megatron, functools.partial):
        setup.initialize_megatron = functools.partial(initialize.initialize_megatron, allow_no_cuda=True)
    # Bridge skips model_parallel_cuda_manual_seed without CUDA devices, but attention always
    # forks the "model-parallel-rng" state: create a CPU-safe tracker up front.
    tensor_parallel.random.initialize_rng_tracker(inference_rng_tracker=True)


@register_patch(
    "megatron_bridge.distopt_te_free_checkpoint",
    backend=NAME,
    phase="setup",
    condition=TE_ABSENT & APEX_ABSENT,
    description="distributed optimizer without TE/Apex: resume no longer asserts on the empty state; Adam step counters restored from the checkpoint",
)
def distopt_te_free_checkpoint(ctx: PatchContext) -> None:
    from primus.backends.megatron_bridge.patches import step_counters

    step_counters.install()


@register_patch(
    "megatron_bridge.zero_centered_norm",
    backend=NAME,
    phase="setup",
    condition=TE_ABSENT & APEX_ABSENT,
    description="zero-centred (1 + weight) RMSNorm/LayerNorm in the local spec, so Gemma builds without TE/Apex",
)
def zero_centered_norm(ctx: PatchContext) -> None:
    from primus.backends.megatron_bridge.patches import zero_centered_norm as norms

    norms.install()


@register_patch(
    "megatron_bridge.peft_without_te",
    backend=NAME,
    phase="before_train",
    condition=TE_ABSENT,
    description="LoRA / DoRA wrap Megatron's local linear layers (Bridge's PEFT code takes TE's placeholders for TE)",
)
def peft_without_te(ctx: PatchContext) -> None:
    from primus.backends.megatron_bridge.patches import peft_without_te as peft

    peft.install()
