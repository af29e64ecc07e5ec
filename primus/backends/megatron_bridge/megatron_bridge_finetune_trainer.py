"""MegatronBridgeFinetuneTrainer: Megatron-Bridge ``finetune()`` (SFT, LoRA, DoRA) on the user's records."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from primus.backends.megatron_bridge.megatron_bridge_pretrain_trainer import MegatronBridgePretrainTrainer

logger = logging.getLogger(__name__)


class MegatronBridgeFinetuneTrainer(MegatronBridgePretrainTrainer):
    """The pretrain lifecycle with Bridge's ``finetune()``, which first loads the starting weights
    (``checkpoint.pretrained_checkpoint``: an HF directory or a Megatron checkpoint); LoRA / DoRA
    runs train and save the adapters only."""

    def setup(self) -> None:
        super().setup()
        self._stage_records()

    def _stage_records(self) -> None:
        """Copy the user's records (and a held-out validation share) where Bridge reads them.

        Every rank stages (atomic, idempotent): no rank reads a half-written file.
        """
        from primus.data.sft_data import stage_sft_data

        data = self.built.sft_data
        cfg = self.ctx.config
        staged = stage_sft_data(
            data,
            Path(self.container.dataset.dataset_root),
            validation_fraction=float(cfg.get("sft_validation_fraction")),
            seed=int(getattr(self.container.dataset, "seed", 1234)),
        )
        if self.ctx.dist.is_main:
            held = " (held out from the training records)" if staged.held_out else ""
            logger.info(
                "records: %d training, %d validation%s, %s; staged in %s",
                staged.training_records,
                staged.validation_records,
                held,
                data.format.replace("_", "/"),
                staged.root,
            )

    def extra_callbacks(self) -> list[Any]:
        """LoRA / DoRA: check that every frozen base weight is bitwise unchanged at the end."""
        if self.container.peft is None:
            return []
        from primus.backends.megatron_bridge.frozen_weights import make_guard

        self.guard = make_guard()
        return [self.guard]

    def _finish_summary(self) -> dict[str, Any]:
        summary = super()._finish_summary()
        guard = getattr(self, "guard", None)
        if guard is not None:
            summary.update(guard.result)
        return summary

    def entry_point(self):
        from megatron.bridge.training.finetune import finetune

        return finetune
