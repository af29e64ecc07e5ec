"""Proof that adapter training left the base model alone: checksums of every frozen weight.

LoRA / DoRA train small adapter matrices and leave the base weights frozen; an adapter export
is only right if that held. ``FrozenWeightsGuard`` fingerprints every parameter that does not
require a gradient when training starts and again when it ends; any bit that changed changes
the fingerprint (two integer sums over the raw bits, one weighted by position, on the device
that holds the weight, in chunks so no large temporary is allocated).
"""

from __future__ import annotations

import logging
from typing import Any

import torch

logger = logging.getLogger(__name__)

CHUNK = 1 << 24  #: elements per reduction (bounded temporaries)
_MODULUS = 65521


def fingerprint(tensor: torch.Tensor) -> tuple[int, int]:
    """(sum of the raw bits, position-weighted sum): equal for bitwise-equal tensors only, in practice."""
    flat = tensor.detach().contiguous().view(-1)
    words = (
        flat.view(torch.uint8) if flat.element_size() == 1 else flat.view(_INT_OF_SIZE[flat.element_size()])
    )
    total, weighted = 0, 0
    for start in range(0, words.numel(), CHUNK):
        part = words[start : start + CHUNK].to(torch.int64)
        index = torch.arange(start, start + part.numel(), device=part.device, dtype=torch.int64)
        total += int(part.sum())
        weighted += int((part * (index % _MODULUS + 1)).sum())
    return total, weighted


_INT_OF_SIZE = {2: torch.int16, 4: torch.int32, 8: torch.int64}


def frozen_fingerprints(model_chunks: list[Any]) -> dict[str, tuple[int, int]]:
    return {
        f"{i}.{name}": fingerprint(param)
        for i, chunk in enumerate(model_chunks)
        for name, param in chunk.named_parameters()
        if not param.requires_grad
    }


def changed_weights(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> list[str]:
    return sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))


def make_guard():
    """A Bridge callback (imported lazily: Bridge is heavy) that fills ``guard.result``."""
    from megatron.bridge.training.callbacks import Callback

    class FrozenWeightsGuard(Callback):
        def __init__(self) -> None:
            self.before: dict[str, tuple[int, int]] = {}
            self.trainable = 0
            self.result: dict[str, Any] = {}

        def on_train_start(self, context) -> None:
            self.before = frozen_fingerprints(context.model)
            self.trainable = sum(
                p.numel() for chunk in context.model for p in chunk.parameters() if p.requires_grad
            )

        def on_train_end(self, context) -> None:
            changed = changed_weights(self.before, frozen_fingerprints(context.model))
            self.result = {
                "frozen_tensors": len(self.before),
                "frozen_weights_unchanged": not changed,
                "trainable_parameters": self.trainable,
            }
            if changed:
                logger.error("%d frozen base weights changed during training: %s", len(changed), changed[:5])
            else:
                logger.info(
                    "base weights: all %d frozen tensors bitwise unchanged; %s adapter parameters trained",
                    len(self.before),
                    f"{self.trainable:,}",
                )

    return FrozenWeightsGuard()
