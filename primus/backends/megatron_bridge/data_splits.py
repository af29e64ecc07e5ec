"""How Megatron will cut each dataset prefix into train / validation / test, read from the ``.idx``.

Megatron's GPT dataset splits a prefix by sequence (``dataset.split`` weights -> bookends ->
``round(bookend * count)``) and then repeats a split's sequences epoch after epoch until it
holds the samples asked for. A split that receives no sequence never gets there:
``GPTDataset._get_num_epochs`` loops forever, silently. A small corpus with the default
``9999,8,2`` split is enough. Primus measures each split before training: it derives a split
that works when the user did not choose one, and refuses a chosen one that cannot.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "validation", "test")


@dataclass(frozen=True)
class SplitCounts:
    """Sequences and tokens per split of one prefix (None: the split is switched off)."""

    prefix: str
    sequences: tuple[int | None, ...]
    tokens: tuple[int | None, ...]

    @property
    def total(self) -> int:
        return sum(s or 0 for s in self.sequences)

    def empty_splits(self) -> list[int]:
        """Indices of splits that are on but receive no sequence (Megatron would hang on them)."""
        return [i for i, n in enumerate(self.sequences) if n is not None and n == 0]


def sequence_lengths(prefix: str):
    """Token count of every sequence in ``prefix.idx`` (a copy: the map closes with its dataset)."""
    import numpy
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    dataset = IndexedDataset(prefix, mmap=True)
    return numpy.array(dataset.sequence_lengths, dtype=numpy.int64)


def split_counts(prefix: str, split: str, lengths=None) -> SplitCounts:
    """Cut ``prefix`` as Megatron's BlendedMegatronDatasetBuilder does for ``split``."""
    from megatron.core.datasets.blended_megatron_dataset_config import (
        convert_split_vector_to_split_matrix,
        parse_and_normalize_split,
    )

    lengths = sequence_lengths(prefix) if lengths is None else lengths
    count = len(lengths)
    sequences: list[int | None] = []
    tokens: list[int | None] = []
    for bookends in convert_split_vector_to_split_matrix(parse_and_normalize_split(split)):
        if bookends is None:
            sequences.append(None)
            tokens.append(None)
            continue
        begin, end = (int(round(b * float(count))) for b in bookends)
        sequences.append(end - begin)
        tokens.append(int(lengths[begin:end].sum()))
    return SplitCounts(prefix, tuple(sequences), tuple(tokens))


def measure(prefixes: list[str], split: str) -> list[SplitCounts]:
    """``split_counts`` of every readable prefix (an unreadable ``.idx`` is Megatron's to report)."""
    out = []
    for prefix in prefixes:
        try:
            lengths = sequence_lengths(prefix)
        except (OSError, ValueError, AssertionError) as exc:
            logger.debug("cannot read %s.idx (%s): its splits are not checked", prefix, exc)
            continue
        out.append(split_counts(prefix, split, lengths))
    return out


def samples_per_split(container: Any) -> tuple[int, int, int]:
    """Samples Bridge will ask of each split (its own function, so the numbers match)."""
    from megatron.bridge.data.loaders import get_train_valid_test_num_samples

    return get_train_valid_test_num_samples(container)


def working_split(split: str, smallest: int) -> str | None:
    """A split in sequence counts that gives every split ``split`` switches on >= 1 sequence.

    The weights keep their proportions where the corpus allows, written as counts of the
    smallest prefix (Megatron normalises them), e.g. ``164,3,0`` for 167 sequences.
    """
    from megatron.core.datasets.blended_megatron_dataset_config import parse_and_normalize_split

    weights = parse_and_normalize_split(split)
    held_out = [max(1, round(w * smallest)) if w > 0 else 0 for w in weights[1:]]
    train = smallest - sum(held_out)
    if train < 1:
        return None
    return ",".join(str(n) for n in (train, *held_out))


def describe_empty(counts: SplitCounts, index: int, samples: int, seq_length: int) -> str:
    """One sequence is one document in a ``primus data prepare`` dataset: say documents."""
    return (
        f"the {SPLIT_NAMES[index]} split of {counts.prefix} gets 0 of its {counts.total} documents "
        f"(0 tokens), and Megatron needs at least one to draw its {samples} samples of {seq_length} "
        "tokens from (it repeats a split's documents as often as needed, but loops forever on none)"
    )
