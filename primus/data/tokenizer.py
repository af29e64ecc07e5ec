"""Tokenizers for ``primus data prepare``: load a HF tokenizer directory or train a new one.

A trained tokenizer is byte-level BPE (the GPT-2 / Llama-3 family: every byte sequence is
representable, no unknown token) with two special tokens: ``<|endoftext|>`` ends every
document (EOS/EOD, also BOS) and ``<|pad|>`` pads (distinct, so Megatron can mask it). It is saved as a HuggingFace tokenizer directory, so
``transformers.AutoTokenizer.from_pretrained(DIR)`` and Megatron's ``HuggingFaceTokenizer``
(``tokenizer.tokenizer_type=HuggingFaceTokenizer tokenizer.tokenizer_model=DIR``) load it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from primus.core.errors import PrimusUserError

logger = logging.getLogger(__name__)

EOD_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
BYTE_ALPHABET = 256


def train_bpe_tokenizer(
    texts: Iterable[str], vocab_size: int, out_dir: str | os.PathLike, *, length: int | None = None
) -> Path:
    """Train byte-level BPE on ``texts`` and save it as a HF tokenizer directory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    smallest = BYTE_ALPHABET + 2
    if vocab_size < smallest:
        raise PrimusUserError(
            f"vocabulary size {vocab_size} is too small",
            key="--train-tokenizer",
            hint=f"byte-level BPE needs at least {smallest} (256 bytes + 2 special tokens); e.g. 4096",
        )
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOD_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer, length=length)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=EOD_TOKEN,
        bos_token=EOD_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=1 << 30,
    )
    out = Path(out_dir)
    _ensure_writable_dir(out, "--tokenizer-out")
    hf.save_pretrained(str(out))
    if len(hf) < vocab_size:
        logger.warning(
            "the corpus is small: the trained vocabulary has %d tokens (asked for %d)", len(hf), vocab_size
        )
    return out


def load_tokenizer(path: str | os.PathLike):
    """A HF tokenizer from a local directory, with an end-of-document (EOS) token."""
    from transformers import AutoTokenizer

    directory = Path(path).expanduser()
    if not directory.is_dir():
        raise PrimusUserError(
            f"tokenizer directory {directory} does not exist",
            key="--tokenizer",
            hint="give a local HF tokenizer directory (tokenizer.json ...) or train one with --train-tokenizer",
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(directory))
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PrimusUserError(
            f"cannot load a tokenizer from {directory}: {first}", key="--tokenizer"
        ) from None
    if tokenizer.eos_token_id is None:
        raise PrimusUserError(
            f"tokenizer {directory} has no EOS token to end documents with",
            key="--tokenizer",
            hint="set eos_token in its tokenizer_config.json",
        )
    return tokenizer


def _ensure_writable_dir(directory: Path, key: str) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PrimusUserError(f"cannot create {directory}: {exc.strerror}", key=key) from None
    if not os.access(directory, os.W_OK):
        raise PrimusUserError(f"directory {directory} is not writable", key=key)
