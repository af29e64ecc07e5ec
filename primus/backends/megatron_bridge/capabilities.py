"""Megatron-Bridge's capabilities besides training, as ``primus.core.capabilities`` names them.

Thin: each call imports the module that does the work when it is used (Megatron-Bridge takes
~10 s to import), so listing recipes or reading ``--help`` stays fast.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


class Recipes:
    def list_recipes(self, family: str | None = None) -> list[Any]:
        from primus.backends.megatron_bridge.recipes import list_recipes

        return list_recipes(family)

    def resolve_recipe(self, name: str) -> Any:
        from primus.backends.megatron_bridge.recipes import resolve_recipe

        return resolve_recipe(name)


class Conversion:
    def import_hf(self, hf: str, out: str, *, device: str, tp: int, pp: int, trust_remote_code: bool) -> Any:
        from primus.backends.megatron_bridge.hf_conversion import import_hf

        return import_hf(hf, out, device=device, tp=tp, pp=pp, trust_remote_code=trust_remote_code)

    def export_hf(
        self, ckpt: str, out: str, *, hf_source: str | None, device: str, trust_remote_code: bool
    ) -> Any:
        from primus.backends.megatron_bridge.peft_export import export_finetuned

        return export_finetuned(
            ckpt, out, hf_source=hf_source, device=device, trust_remote_code=trust_remote_code
        )

    def verify(
        self,
        hf: str,
        ckpt: str,
        *,
        atol: float,
        batch: int,
        seq_len: int,
        device: str,
        trust_remote_code: bool,
    ) -> Any:
        from primus.backends.megatron_bridge.hf_verify import verify_logits

        return verify_logits(
            hf,
            ckpt,
            atol=atol,
            batch=batch,
            seq_len=seq_len,
            device=device,
            trust_remote_code=trust_remote_code,
        )

    def architectures(self) -> list[str]:
        from primus.backends.megatron_bridge.hf_conversion import supported_architectures

        return supported_architectures()


class DataPreparation:
    def prepare_dataset(
        self, corpus: Any, tokenizer_dir: str | os.PathLike, prefix: Path, *, workers: int, started: float
    ) -> Any:
        from primus.backends.megatron_bridge.data_prepare import prepare_indexed_dataset

        return prepare_indexed_dataset(corpus, tokenizer_dir, prefix, workers=workers, started=started)


class Inference:
    def open_model(
        self,
        *,
        ckpt: str | None = None,
        hf: str | None = None,
        tokenizer: str | None = None,
        device: str = "auto",
        fp32: bool = False,
        trust_remote_code: bool = False,
    ) -> Any:
        from primus.backends.megatron_bridge.log_noise import quiet_third_party_noise

        quiet_third_party_noise()  # before torch imports tqdm (it reads TQDM_DISABLE once)
        from primus.backends.megatron_bridge.inference_model import open_model

        return open_model(
            ckpt=ckpt,
            hf=hf,
            tokenizer=tokenizer,
            device=device,
            fp32=fp32,
            trust_remote_code=trust_remote_code,
        )

    def sft_sequences(
        self,
        model: Any,
        records: list[str],
        *,
        chat: bool,
        loss_mode: str,
        chat_template: str | None,
        seq_len: int,
    ) -> list[Any]:
        from primus.backends.megatron_bridge.eval_data import sft_sequences

        return sft_sequences(
            model, records, chat=chat, loss_mode=loss_mode, chat_template=chat_template, seq_len=seq_len
        )

    def indexed_documents(self, prefix: str) -> Any:
        from primus.backends.megatron_bridge.eval_data import indexed_documents

        return indexed_documents(prefix)
