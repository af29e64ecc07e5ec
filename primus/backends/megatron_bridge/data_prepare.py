"""Tokenize a corpus into a Megatron indexed dataset (``PREFIX.bin`` + ``PREFIX.idx``).

The files are written by Megatron-Core's own ``IndexedDatasetBuilder`` (never a copy of the
format), token dtype chosen by ``DType.optimal_dtype`` as Megatron's ``preprocess_data.py``
does. Every document ends with the tokenizer's EOS token (Megatron's EOD). Both files appear
only when complete: they are written under temporary names and renamed at the end.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from primus.data.sources import Corpus
from primus.data.tokenizer import load_tokenizer

logger = logging.getLogger(__name__)

BATCH_DOCUMENTS = 64


@dataclass(frozen=True)
class PrepareSummary:
    prefix: str
    tokenizer: str
    documents: int
    tokens: int
    input_bytes: int
    output_bytes: int
    seconds: float
    vocab_size: int
    dtype: str

    def as_dict(self) -> dict:
        return asdict(self)

    def render(self) -> str:
        rate = self.input_bytes / self.seconds / 1e6 if self.seconds > 0 else 0.0
        return "\n".join(
            [
                f"wrote {self.prefix}.bin / {self.prefix}.idx",
                f"  documents   {self.documents:,}",
                f"  tokens      {self.tokens:,} ({self.dtype}, vocabulary {self.vocab_size:,})",
                f"  input       {self.input_bytes / 1e6:,.2f} MB of text",
                f"  output      {self.output_bytes / 1e6:,.2f} MB",
                f"  time        {self.seconds:.1f} s ({rate:.2f} MB/s)",
                f"  tokenizer   {self.tokenizer}",
                f"train on it:  primus train --data_path {self.prefix} --run_dir runs/{Path(self.prefix).name} "
                f"tokenizer.tokenizer_type=HuggingFaceTokenizer tokenizer.tokenizer_model={self.tokenizer}",
            ]
        )


# -- tokenization (runs in worker processes when workers > 1) ------------------------------
_worker_tokenizer = None


def _init_worker(tokenizer_dir: str) -> None:
    global _worker_tokenizer
    _worker_tokenizer = load_tokenizer(tokenizer_dir)


def _encode_batch(texts: list[str]) -> list[list[int]]:
    tok = _worker_tokenizer
    ids = tok(texts, add_special_tokens=False)["input_ids"]
    return [doc + [tok.eos_token_id] for doc in ids]


def _batches(corpus: Corpus, progress, consumed: list[int]) -> Iterator[list[str]]:
    batch: list[str] = []
    for text, nbytes in corpus.documents():
        batch.append(text)
        consumed[0] += nbytes
        progress.update(nbytes)
        if len(batch) == BATCH_DOCUMENTS:
            yield batch
            batch = []
    if batch:
        yield batch


def prepare_indexed_dataset(
    corpus: Corpus,
    tokenizer_dir: str | os.PathLike,
    output_prefix: str | os.PathLike,
    workers: int = 1,
    started: float | None = None,
) -> PrepareSummary:
    """Tokenize ``corpus`` with the HF tokenizer in ``tokenizer_dir`` into ``output_prefix``.

    ``started`` (a ``time.perf_counter()`` value) makes the summary's time include earlier work
    such as training the tokenizer.
    """
    import numpy
    from tqdm import tqdm

    from primus.backends.megatron_bridge.bootstrap import prepare_imports

    prepare_imports()
    with warnings.catch_warnings():  # "Transformer Engine and Apex are not installed": not used here
        warnings.simplefilter("ignore")
        from megatron.core.datasets.indexed_dataset import DType, IndexedDatasetBuilder

    start = time.perf_counter() if started is None else started
    prefix = str(output_prefix)
    tokenizer = load_tokenizer(tokenizer_dir)
    dtype = DType.optimal_dtype(len(tokenizer))
    bin_tmp, idx_tmp = prefix + ".bin.tmp", prefix + ".idx.tmp"
    builder = IndexedDatasetBuilder(bin_tmp, dtype=dtype)
    documents = tokens = 0
    consumed = [0]  # input bytes read (the producer may run in the pool's feeder thread)
    progress = tqdm(
        total=corpus.total_bytes, unit="B", unit_scale=True, desc="tokenizing", disable=None, leave=False
    )
    pool = None
    try:
        if workers > 1:
            # The parent may have used the tokenizers thread pool (training): keep the
            # forked workers single-threaded, and quiet about it.
            os.environ["TOKENIZERS_PARALLELISM"] = "false"
            pool = multiprocessing.get_context("fork").Pool(
                workers, initializer=_init_worker, initargs=(str(tokenizer_dir),)
            )
            encoded = pool.imap(_encode_batch, _batches(corpus, progress, consumed), chunksize=1)
        else:
            _init_worker(str(tokenizer_dir))
            encoded = map(_encode_batch, _batches(corpus, progress, consumed))
        for batch in encoded:
            for ids in batch:
                builder.add_document(numpy.asarray(ids, dtype=dtype), [len(ids)])
                documents += 1
                tokens += len(ids)
        builder.finalize(idx_tmp)
    except BaseException:
        builder.data_file.close()
        for tmp in (bin_tmp, idx_tmp):
            Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        progress.close()
        if pool is not None:
            pool.terminate()
    os.replace(bin_tmp, prefix + ".bin")
    os.replace(idx_tmp, prefix + ".idx")
    output_bytes = sum(Path(prefix + ext).stat().st_size for ext in (".bin", ".idx"))
    return PrepareSummary(
        prefix=prefix,
        tokenizer=str(tokenizer_dir),
        documents=documents,
        tokens=tokens,
        input_bytes=consumed[0],
        output_bytes=output_bytes,
        seconds=time.perf_counter() - start,
        vocab_size=len(tokenizer),
        dtype=numpy.dtype(dtype).name,
    )
