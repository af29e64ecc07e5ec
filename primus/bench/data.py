"""The same training tokens for every benchmark system: one Megatron indexed dataset.

Primus and Megatron-Bridge read the prefix through their own data pipeline (``--data_path``);
the HF loop reads the same tokens through Megatron-Core's ``IndexedDataset`` and cuts random
windows of ``seq`` tokens from their concatenation. With the same text, the loss columns of
all systems are comparable (same distribution; sample order and initialisation still differ).
Without a prefix, a CPU benchmark writes one of synthetic tokens (:func:`write_synthetic`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from primus.core.errors import PrimusUserError

#: enough text for any benchmark run; the HF loop never holds more than this many tokens
MAX_TOKENS = 64 * 2**20


def check_prefix(prefix: str, vocab: int) -> Path:
    """The prefix, once its files exist and its token ids fit ``vocab`` (the last id is the null
    tokenizer's end-of-document token)."""
    path = Path(prefix).expanduser().resolve()
    missing = [s for s in (".bin", ".idx") if not path.with_name(path.name + s).is_file()]
    if missing:
        raise PrimusUserError(
            f"{prefix}: no {' or '.join(missing)} file",
            key="--data",
            source="cli",
            hint="give an indexed-dataset prefix, e.g. from `primus data prepare --output-prefix P`",
        )
    largest = int(tokens(path, MAX_TOKENS).max(initial=0))
    if largest >= vocab - 1:
        raise PrimusUserError(
            f"{prefix} has token id {largest}, beyond the workload's vocabulary ({vocab}, last id reserved)",
            key="--data",
            source="cli",
            hint="prepare the text with a smaller tokenizer (`primus data prepare --train-tokenizer N`)",
        )
    return path


def tokens(prefix: Path, limit: int = MAX_TOKENS) -> np.ndarray:
    """The dataset's documents concatenated (at most ``limit`` tokens), as int64."""
    from primus.backends.megatron_bridge.log_noise import quiet_third_party_noise

    quiet_third_party_noise()  # importing Megatron-Core restates its TE/Apex fallbacks
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    dataset = IndexedDataset(str(prefix))
    parts, total = [], 0
    for i in range(len(dataset)):
        part = np.asarray(dataset[i], dtype=np.int64)
        parts.append(part[: limit - total])
        total += len(parts[-1])
        if total >= limit:
            break
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


class TokenWindows:
    """Random ``[batch, seq]`` windows of a token stream, reproducible from the seed."""

    def __init__(self, stream: np.ndarray, seq: int, seed: int) -> None:
        if len(stream) <= seq:
            raise ValueError(f"{len(stream)} tokens are fewer than one sequence of {seq}")
        self.stream, self.seq = stream, seq
        self.rng = np.random.default_rng(seed)

    def batch(self, size: int) -> np.ndarray:
        starts = self.rng.integers(0, len(self.stream) - self.seq + 1, size=size)
        return np.stack([self.stream[s : s + self.seq] for s in starts])


def write_synthetic(prefix: Path, vocab: int, num_tokens: int, seed: int = 0) -> Path:
    """An indexed dataset of Megatron's mock-data pattern: documents of random length counting
    ``1, 2, 3, ...`` (modulo ``vocab - 1``) and ending with id ``vocab - 1`` (the null tokenizer's
    end of document). Learnable, so the loss columns show learning, not only noise."""
    from primus.backends.megatron_bridge.log_noise import quiet_third_party_noise

    quiet_third_party_noise()
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    prefix.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    builder = IndexedDatasetBuilder(str(prefix) + ".bin", dtype=np.uint16 if vocab < 2**16 else np.int32)
    written = 0
    while written < num_tokens:
        length = int(rng.integers(2, 1024))
        ids = np.append((np.arange(length - 1) + 1) % (vocab - 1), vocab - 1)
        builder.add_document(torch.from_numpy(ids), [length])
        written += length
    builder.finalize(str(prefix) + ".idx")
    return prefix
