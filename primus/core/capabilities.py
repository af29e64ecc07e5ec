"""What a backend can do besides training, as the CLI sees it.

The CLI reaches every capability through the backend's adapter (``BackendAdapter.recipes()``,
``.conversion()``, ``.data_preparation()``, ``.inference()``), never by importing a backend package; a backend
without a capability says so in one line.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


class RecipeCatalog(Protocol):
    """The backend's ready-made configurations."""

    def list_recipes(self, family: str | None = None) -> list[Any]: ...

    def resolve_recipe(self, name: str) -> Any: ...


class HFConversion(Protocol):
    """HuggingFace checkpoints in and out of the backend's format, and a numerical check."""

    def import_hf(
        self, hf: str, out: str, *, device: str, tp: int, pp: int, trust_remote_code: bool
    ) -> Any: ...

    def export_hf(
        self, ckpt: str, out: str, *, hf_source: str | None, device: str, trust_remote_code: bool
    ) -> Any: ...

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
    ) -> Any: ...

    def architectures(self) -> list[str]: ...


class DataPreparation(Protocol):
    """Tokenized text in the backend's dataset format."""

    def prepare_dataset(
        self, corpus: Any, tokenizer_dir: str | os.PathLike, prefix: Path, *, workers: int, started: float
    ) -> Any: ...


@dataclass(frozen=True)
class GenerationParams:
    """How to continue a prompt: greedy (``temperature == 0``) or sampled with top-k / top-p."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 0.0
    seed: int = 1234
    stop_at_eos: bool = True

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0 or self.top_k == 1


@dataclass
class Completion:
    """One prompt's continuation: its tokens and text, and how long the batch took."""

    prompt_tokens: list[int]
    tokens: list[int]
    text: str
    seconds: float


class InferenceModel(Protocol):
    """A trained model in memory (``primus generate`` / ``primus eval`` / the eval harness)."""

    tokenizer: Any

    @property
    def vocab_size(self) -> int: ...

    @property
    def max_sequence_length(self) -> int: ...

    def logits(self, tokens: Any) -> Any:
        """fp32 next-token logits [batch, seq, vocab] of token ids [batch, seq]."""

    def generate(
        self, prompts: list[list[int]], params: GenerationParams, on_text: Any = None
    ) -> list[Completion]:
        """Continuations of the prompts (token ids); ``on_text(i, piece)`` streams prompt i's text."""


@dataclass(frozen=True)
class LossSequence:
    """Tokens to score: ``inputs[i]`` predicts ``labels[i]``, which counts where ``mask[i]`` is 1."""

    inputs: list[int]
    labels: list[int]
    mask: list[int]


class Inference(Protocol):
    """Load a checkpoint or HF directory for inference (a context manager of InferenceModel), and
    read held-out data the way training reads it (``primus eval``)."""

    def open_model(
        self,
        *,
        ckpt: str | None = None,
        hf: str | None = None,
        tokenizer: str | None = None,
        device: str = "auto",
        fp32: bool = False,
        trust_remote_code: bool = False,
    ) -> AbstractContextManager[InferenceModel]: ...

    def sft_sequences(
        self,
        model: InferenceModel,
        records: list[str],
        *,
        chat: bool,
        loss_mode: str,
        chat_template: str | None,
        seq_len: int,
    ) -> list[LossSequence]:
        """Fine-tuning records (normalised JSON lines) tokenized and masked as fine-tuning trains on them."""
        ...

    def indexed_documents(self, prefix: str) -> Iterator[Sequence[int]]:
        """The documents of an indexed dataset ``PREFIX.bin/.idx``, in order."""
        ...
