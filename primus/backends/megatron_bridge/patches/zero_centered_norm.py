"""Zero-centred ("1 + weight") RMSNorm / LayerNorm for Megatron-Core's local (TE/Apex-free) spec.

Gemma-family providers set ``layernorm_zero_centered_gamma``: the stored weight ``w`` scales by
``1 + w`` (HF Gemma's RMSNorm computes ``x_normed * (1 + weight)`` the same way). Megatron-Core
implements that only in Transformer Engine and in Apex's ``FusedLayerNorm``; its torch fallback,
``WrappedTorchNorm``, asserts it is off, so without TE or Apex no Gemma model can be built. The
builder below returns what ``WrappedTorchNorm`` returns for every other config, and for a
zero-centred one a torch norm whose weight starts at 0 and is applied as ``weight + 1``, the
arithmetic of Megatron-Core's ``FusedLayerNorm`` (``fused_layer_norm.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Megatron-Bridge's conversion decides how to shard a module by its class name.
REPLICATED_NAMES = ("ZeroCenteredRMSNorm", "ZeroCenteredLayerNorm")


class ZeroCenteredRMSNorm(torch.nn.RMSNorm):
    """RMSNorm applying ``1 + weight``; weight initialised to 0 (identity scale)."""

    def reset_parameters(self) -> None:
        if self.weight is not None:
            torch.nn.init.zeros_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, self.normalized_shape, self.weight + 1, self.eps)


class ZeroCenteredLayerNorm(torch.nn.LayerNorm):
    """LayerNorm applying ``1 + weight``; weight initialised to 0 (identity scale)."""

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.weight is not None:
            torch.nn.init.zeros_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.normalized_shape, self.weight + 1, self.bias, self.eps)


class TorchNormWithZeroCenteredGamma:
    """Drop-in for ``megatron.core.transformer.torch_norm.WrappedTorchNorm`` (same signature)."""

    def __new__(
        cls,
        config,
        hidden_size: int,
        eps: float = 1e-5,
        persist_layer_norm: bool = False,
        zero_centered_gamma: bool = False,
        normalization: str = "LayerNorm",
    ):
        from megatron.core.transformer.torch_norm import WrappedTorchNorm

        if not config.layernorm_zero_centered_gamma:
            return WrappedTorchNorm(
                config, hidden_size, eps, persist_layer_norm, zero_centered_gamma, normalization
            )
        kinds = {"RMSNorm": ZeroCenteredRMSNorm, "LayerNorm": ZeroCenteredLayerNorm}
        if config.normalization not in kinds:
            raise ValueError(
                f"zero-centred gamma is implemented for {sorted(kinds)}, not {config.normalization}"
            )
        if config.persist_layer_norm or config.sequence_parallel or config.memory_efficient_layer_norm:
            raise ValueError(
                "zero-centred torch norm: persist_layer_norm, sequence_parallel and "
                "memory_efficient_layer_norm need Transformer Engine or Apex"
            )
        return kinds[config.normalization](hidden_size, eps=eps)


#: Megatron-Core modules that bind ``WrappedTorchNorm`` to a global when Apex is absent (the local
#: spec's layer norms, its backend provider, and the transformer block's final norm).
NORM_GLOBALS = {
    "megatron.core.models.backends": ("WrappedTorchNorm", "LNImpl"),
    "megatron.core.models.gpt.gpt_layer_specs": ("WrappedTorchNorm", "LNImpl"),
    "megatron.core.transformer.transformer_block": ("WrappedTorchNorm", "LayerNormImpl"),
}


def install() -> list[str]:
    """Point those globals at the zero-centred-capable builder; let Bridge's conversion replicate
    the new norm classes across tensor-parallel ranks. Returns the globals replaced."""
    import importlib

    from megatron.bridge.models.conversion.param_mapping import AutoMapping
    from megatron.core.transformer.torch_norm import WrappedTorchNorm

    replaced = []
    for module_name, names in NORM_GLOBALS.items():
        module = importlib.import_module(module_name)
        for name in names:
            if getattr(module, name, None) is WrappedTorchNorm:
                setattr(module, name, TorchNormWithZeroCenteredGamma)
                replaced.append(f"{module_name}.{name}")
    for name in REPLICATED_NAMES:
        AutoMapping.register_module_type(name, "replicated")
    return replaced
