"""Held-out data for ``primus eval``, read the way training reads it.

Fine-tuning records go through Megatron-Bridge's own SFT dataset (``build_gpt_sft_split`` with the
preprocessing ``finetune_setup.sft_preprocessing`` gives a fine-tuning run) and its ``collate_fn``:
the tokens, the shifted labels and the loss mask are the ones fine-tuning trains on (assistant
tokens of chat records, completion tokens and the end-of-text token of prompt/completion records).
Indexed datasets (``PREFIX.bin/.idx``) are read with Megatron-Core's ``IndexedDataset``.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from primus.backends.megatron_bridge.finetune_setup import sft_preprocessing
from primus.core.capabilities import LossSequence
from primus.core.errors import PrimusUserError

#: the key a chat-template problem names
TEMPLATE_KEY = "--chat-template"


def _run_chat_template(model: Any) -> str | None:
    """The chat template file the checkpoint's run trained with (``--chat_template``), if it still exists."""
    run_config = Path(getattr(model, "source", "")) / "run_config.yaml"
    if not run_config.is_file():
        return None
    import yaml

    config = yaml.safe_load(run_config.read_text(encoding="utf-8")) or {}
    path = (config.get("tokenizer") or {}).get("chat_template_path") or config.get("chat_template")
    return str(path) if path and Path(str(path)).expanduser().is_file() else None


def _megatron_tokenizer(model: Any, chat: bool, chat_template: str | None) -> Any:
    """Bridge's HuggingFace tokenizer wrapper over the model's tokenizer, as fine-tuning builds it."""
    from megatron.bridge.training.tokenizers.config import TokenizerConfig
    from megatron.bridge.training.tokenizers.tokenizer import build_tokenizer

    from primus.data.sft_data import chat_template_problem

    tokenizer_dir = str(model.tokenizer.name_or_path)
    template = chat_template or (_run_chat_template(model) if chat else None)
    if chat:
        problem = chat_template_problem(tokenizer_dir, template)
        if problem:
            raise PrimusUserError(problem, key=TEMPLATE_KEY)
    config = TokenizerConfig(
        tokenizer_type="HuggingFaceTokenizer",
        tokenizer_model=tokenizer_dir,
        chat_template_path=str(Path(template).expanduser()) if template else None,
    )
    return build_tokenizer(config)


def _dataset_kwargs(chat: bool, loss_mode: str, seq_len: int, root: Path) -> dict[str, Any]:
    from megatron.bridge.data.builders.gpt_sft import (
        GPTSFTDatasetConfig,
        normalize_gpt_sft_dataset_kwargs,
    )

    config = GPTSFTDatasetConfig(
        seq_length=seq_len,
        dataset_root=str(root),
        preprocessing=sft_preprocessing(chat, loss_mode),
        do_validation=False,
        do_test=False,
    )
    return normalize_gpt_sft_dataset_kwargs(config)


def _mask_error(exc: ValueError, loss_mode: str) -> PrimusUserError:
    reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    return PrimusUserError(
        f"the records cannot be masked for sft_loss {loss_mode} ({reason})",
        key=TEMPLATE_KEY,
        hint="wrap the assistant content in {% generation %}...{% endgeneration %} in the chat "
        "template, or score every token with --sft-loss full",
    )


def sft_sequences(
    model: Any,
    records: list[str],
    *,
    chat: bool,
    loss_mode: str,
    chat_template: str | None,
    seq_len: int,
) -> list[LossSequence]:
    """One :class:`LossSequence` per record (see the module docstring), truncated to ``seq_len``."""
    from megatron.bridge.data.builders.gpt_sft import build_gpt_sft_split

    tokenizer = _megatron_tokenizer(model, chat, chat_template)
    with tempfile.TemporaryDirectory(prefix="primus-eval-") as tmp, warnings.catch_warnings():
        # Bridge's rank-0 prints look for a launcher's LOCAL_RANK: one process here, rank 0
        warnings.filterwarnings("ignore", message="Could not determine local rank")
        path = Path(tmp) / "records.jsonl"  # Bridge writes its index caches next to the file
        path.write_text("".join(line + "\n" for line in records), encoding="utf-8")
        dataset = build_gpt_sft_split(
            path,
            tokenizer=tokenizer,
            seq_length=seq_len,
            memmap_workers=1,
            seed=1234,
            packed_sequence_size=-1,
            dataset_kwargs=_dataset_kwargs(chat, loss_mode, seq_len, Path(tmp)),
        )
        sequences = []
        for i in range(len(dataset)):
            try:
                item = dataset[i]
            except ValueError as exc:  # a template Bridge cannot mask
                raise _mask_error(exc, loss_mode) from None
            batch = dataset.collate_fn([item])
            n = min(len(item["input_ids"]) - 1, batch["tokens"].shape[1])
            sequences.append(
                LossSequence(
                    inputs=batch["tokens"][0, :n].tolist(),
                    labels=batch["labels"][0, :n].tolist(),
                    mask=batch["loss_mask"][0, :n].tolist(),
                )
            )
    return sequences


def indexed_documents(prefix: str) -> Iterator[Sequence[int]]:
    """The documents of ``PREFIX.bin/.idx`` in order (Megatron-Core's ``IndexedDataset``)."""
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    dataset = IndexedDataset(str(prefix), mmap=True)
    for i in range(len(dataset)):
        yield dataset[i]
