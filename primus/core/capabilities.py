"""What a backend can do besides training, as the CLI sees it.

The CLI reaches every capability through the backend's adapter (``BackendAdapter.recipes()``,
``.conversion()``, ``.data_preparation()``), never by importing a backend package; a backend
without a capability says so in one line.
"""

from __future__ import annotations

import os
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
