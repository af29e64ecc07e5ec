"""Loss and perplexity of a model on held-out token sequences.

The loss is the token-weighted mean of the next-token cross-entropy (natural log) over the
tokens a sequence's mask counts, the same mean Megatron reports for training and validation;
perplexity is ``exp(loss)``. An indexed dataset is scored in windows of ``seq_len + 1`` tokens
over its documents in order (one token shared between consecutive windows, as Megatron's
``GPTDataset`` cuts samples), so every token but the first is predicted once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

from primus.core.capabilities import InferenceModel, LossSequence
from primus.core.errors import PrimusUserError


@dataclass(frozen=True)
class LossResult:
    """What ``primus eval --data`` reports."""

    loss: float
    """mean next-token cross-entropy (nats) over the counted tokens"""
    tokens: int
    """tokens counted (predicted and in the mask)"""
    sequences: int
    seconds: float

    @property
    def perplexity(self) -> float:
        return math.exp(self.loss) if self.loss < 700 else math.inf

    def as_dict(self) -> dict[str, Any]:
        return {
            "loss": self.loss,
            "perplexity": self.perplexity,
            "tokens": self.tokens,
            "sequences": self.sequences,
            "seconds": round(self.seconds, 3),
        }


def windows(documents: Iterable[Sequence[int]], seq_len: int) -> Iterator[LossSequence]:
    """Consecutive windows of ``seq_len`` predictions over the documents' tokens, in order; the
    last, shorter window too (when it predicts at least one token)."""
    if seq_len < 1:
        raise ValueError(f"seq_len must be positive, got {seq_len}")
    buffer: list[int] = []
    for document in documents:
        buffer.extend(int(t) for t in document)
        start = 0
        while len(buffer) - start >= seq_len + 1:
            window = buffer[start : start + seq_len + 1]
            yield LossSequence(window[:-1], window[1:], [1] * seq_len)
            start += seq_len
        buffer = buffer[start:]
    if len(buffer) >= 2:
        yield LossSequence(buffer[:-1], buffer[1:], [1] * (len(buffer) - 1))


def _batched(sequences: Iterable[LossSequence], size: int) -> Iterator[list[LossSequence]]:
    it = iter(sequences)
    while batch := list(islice(it, size)):
        yield batch


def sequence_nll(model: InferenceModel, batch: list[LossSequence]) -> list[tuple[float, int]]:
    """Per sequence: the summed negative log-likelihood of its counted labels, and their number."""
    import torch

    length = max(len(s.inputs) for s in batch)
    inputs = torch.zeros(len(batch), length, dtype=torch.long)
    labels = torch.zeros(len(batch), length, dtype=torch.long)
    mask = torch.zeros(len(batch), length, dtype=torch.float64)
    for row, seq in enumerate(batch):  # right-padded: a causal model never looks at the padding
        n = len(seq.inputs)
        inputs[row, :n] = torch.tensor(seq.inputs)
        labels[row, :n] = torch.tensor(seq.labels)
        mask[row, :n] = torch.tensor(seq.mask, dtype=torch.float64)
    highest = int(max(inputs.max(), labels.max()))
    if highest >= model.vocab_size:
        raise PrimusUserError(
            f"token id {highest} is outside the model's vocabulary ({model.vocab_size} tokens)",
            key="--data",
            hint="tokenize the data with the model's tokenizer (primus data prepare --tokenizer DIR)",
        )
    logits = model.logits(inputs)
    labels, mask = labels.to(logits.device), mask.to(logits.device)
    nll = torch.nn.functional.cross_entropy(
        logits.float().transpose(1, 2), labels, reduction="none"
    )  # [batch, seq]
    sums = (nll.double() * mask).sum(dim=1).tolist()
    counts = mask.sum(dim=1).long().tolist()
    return list(zip(sums, counts, strict=True))


def evaluate_loss(
    model: InferenceModel,
    sequences: Iterable[LossSequence],
    *,
    batch_size: int = 4,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> LossResult:
    """The token-weighted mean loss of ``model`` on (the first ``limit`` of) ``sequences``."""
    start = time.perf_counter()
    if limit is not None:
        sequences = islice(sequences, limit)
    total, tokens, count = 0.0, 0, 0
    for batch in _batched(sequences, batch_size):
        for nll, n in sequence_nll(model, batch):
            total += nll
            tokens += n
        count += len(batch)
        if progress is not None:
            progress(count, tokens)
    if tokens == 0:
        raise PrimusUserError(
            f"no token to score in {count} sequences (every label is masked out, or the data is empty)",
            key="--data",
            hint="give records with assistant turns / completions, or --sft-loss full",
        )
    return LossResult(total / tokens, tokens, count, time.perf_counter() - start)
