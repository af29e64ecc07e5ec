"""Values users should not have to compute, derived from the rest of the config with provenance.

Each is set only where the user did not set it (``derived:<why>`` in config.yaml); where a
value the user set cannot work, a problem is reported instead.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from primus.backends.megatron_bridge.config_tree import Provenance, set_path
from primus.core.config.resolved import ResolvedConfig, derived_source
from primus.core.errors import ProblemCollector

logger = logging.getLogger(__name__)

#: keys Primus reads from the ``model`` section itself (not ConfigContainer fields)
PRIMUS_MODEL_KEYS = {"multiple_of": 256}


def llama_ffn_hidden_size(hidden_size: int, multiple_of: int = 256) -> int:
    """Llama's rule: 2/3 of 4*hidden, rounded up to a multiple of ``multiple_of``."""
    hidden = int(2 * 4 * hidden_size / 3)
    return multiple_of * math.ceil(hidden / multiple_of)


def tokenizer_vocab_size(tokenizer: Any) -> int | None:
    """The vocabulary of the tokenizer Bridge will build, when it is local (None otherwise)."""
    kind = getattr(tokenizer, "tokenizer_type", None)
    model_path = getattr(tokenizer, "tokenizer_model", None)
    if kind != "NullTokenizer" and not (model_path and Path(str(model_path)).exists()):
        return None  # a hub id or a missing file: Bridge reports it when it builds the tokenizer
    from megatron.bridge.training.tokenizers.tokenizer import build_tokenizer

    try:
        return int(build_tokenizer(tokenizer).vocab_size)
    except Exception as exc:  # an unreadable tokenizer: Bridge's own error comes at run time
        logger.debug("tokenizer not built ahead of the run: %s", exc)
        return None


def padded_vocab_size(vocab: int, divisible_by: int, tp: int) -> int:
    multiple = max(divisible_by, 1) * max(tp, 1)
    return multiple * math.ceil(vocab / multiple)


class DerivedValues:
    """The derivations of one build, in order: model sizes, sequence, split, vocabulary, batch."""

    def __init__(self, user: ResolvedConfig, problems: ProblemCollector, world_size: int = 1) -> None:
        self.user = user
        self.problems = problems
        self.world_size = world_size

    def apply(self, container: Any, provenance: Provenance) -> None:
        model = container.model
        multiple_of = (self.user.get("model", {}) or {}).get("multiple_of", PRIMUS_MODEL_KEYS["multiple_of"])
        if getattr(model, "ffn_hidden_size", None) is None and model.hidden_size:
            set_path(
                container,
                "model.ffn_hidden_size",
                llama_ffn_hidden_size(model.hidden_size, multiple_of),
                derived_source(f"llama_ffn(multiple_of={multiple_of})"),
                provenance,
            )
        if getattr(model, "kv_channels", None) is None and model.hidden_size and model.num_attention_heads:
            set_path(
                container,
                "model.kv_channels",
                model.hidden_size // model.num_attention_heads,
                derived_source("hidden_size/num_attention_heads"),
                provenance,
            )
        if getattr(model, "num_query_groups", None) is None and model.num_attention_heads:
            set_path(
                container,
                "model.num_query_groups",
                model.num_attention_heads,
                derived_source("num_attention_heads"),
                provenance,
            )
        self._derive_seq_length(container, provenance)
        self._derive_warmup(container, provenance)
        self._derive_split(container, provenance)
        self._derive_vocab(container, provenance)
        self._vocab_as_bridge_sets_it(container, provenance)
        self._derive_batch(container, provenance)

    def _derive_warmup(self, container: Any, provenance: Provenance) -> None:
        """A warm-up as long as the run never lets the LR reach its peak: 10 % of the run instead.

        Recipes warm up over thousands of iterations, tuned for full-length runs; a short run
        from a recipe would spend all of it warming up. A warm-up the user chose is kept, with
        a warning.
        """
        train, scheduler = container.train, container.scheduler
        warmup, iters = getattr(scheduler, "lr_warmup_iters", 0) or 0, train.train_iters
        if not iters or warmup < iters or getattr(scheduler, "lr_warmup_fraction", None) is not None:
            return
        key = "scheduler.lr_warmup_iters"
        if self._user_set(key):
            logger.warning(
                "%s=%d (%s) >= train.train_iters=%d: the learning rate never finishes warming up",
                key,
                warmup,
                self.user.source_of(key),
                iters,
            )
            return
        derived = max(1, iters // 10)
        logger.info(
            "%s=%d is at least this %d-iteration run (the LR would never finish warming up); using %d (10 %%)",
            key,
            warmup,
            iters,
            derived,
        )
        set_path(container, key, derived, derived_source(f"10% of train_iters (was {warmup})"), provenance)

    def _derive_seq_length(self, container: Any, provenance: Provenance) -> None:
        model_set, data_set = self._user_set("model.seq_length"), self._user_set("dataset.seq_length")
        m, d = container.model.seq_length, container.dataset.seq_length
        if model_set and data_set and m != d:
            self.problems.add(
                f"model.seq_length={m} and dataset.seq_length={d} differ",
                key="dataset.seq_length",
                source=self.user.source_of("dataset.seq_length"),
                hint="set one of them; Primus keeps the other equal",
            )
        elif m != d:
            if data_set:
                set_path(container, "model.seq_length", d, derived_source("dataset.seq_length"), provenance)
            else:
                set_path(container, "dataset.seq_length", m, derived_source("model.seq_length"), provenance)

    def _derive_split(self, container: Any, provenance: Provenance) -> None:
        """A split every used part of the corpus can fill (Megatron hangs on an empty one).

        Without evaluation (``validation.eval_iters: 0``) all real data goes to training. With
        it, a split the user did not choose is sized from the ``.idx`` files when the recipe's
        (``9999,8,2``) would leave a small corpus's validation or test split empty; a split the
        user chose is checked by preflight instead.
        """
        from primus.backends.megatron_bridge import data_splits

        blend = getattr(container.dataset, "blend", None)
        if self._user_set("dataset.split") or blend is None:
            return
        if getattr(container.validation, "eval_iters", None) == 0:
            set_path(
                container, "dataset.split", "1,0,0", derived_source("validation.eval_iters=0"), provenance
            )
            return
        split = getattr(container.dataset, "split", None)
        prefixes = [p for p in blend[0] if Path(p + ".idx").is_file()]
        if not split or not prefixes:
            return
        counts = data_splits.measure(prefixes, split)
        if not any(c.empty_splits() for c in counts):
            return
        smallest = min(c.total for c in counts)
        derived = data_splits.working_split(split, smallest)
        readable = [c.prefix for c in counts]
        if derived is None or any(c.empty_splits() for c in data_splits.measure(readable, derived)):
            return  # preflight explains why no split works
        logger.info(
            "dataset.split %s would leave a split of this %d-document corpus empty; using %s",
            split,
            smallest,
            derived,
        )
        set_path(
            container,
            "dataset.split",
            derived,
            derived_source(f"{smallest} documents; {split} leaves a split empty"),
            provenance,
        )

    def _derive_vocab(self, container: Any, provenance: Provenance) -> None:
        tokenizer, model = container.tokenizer, container.model
        if model.vocab_size is not None or getattr(tokenizer, "tokenizer_type", None) != "NullTokenizer":
            return
        if getattr(tokenizer, "use_tokenizer_vocab_size", False) or not tokenizer.vocab_size:
            return
        padded = padded_vocab_size(
            tokenizer.vocab_size, model.make_vocab_size_divisible_by, model.tensor_model_parallel_size
        )
        set_path(container, "model.vocab_size", padded, derived_source("vocab_padding"), provenance)

    def _vocab_as_bridge_sets_it(self, container: Any, provenance: Provenance) -> None:
        """The model vocabulary Bridge's setup() will use, decided now with Bridge's own rule.

        Recipes leave ``model.vocab_size`` at the HF model's size and set
        ``tokenizer.use_tokenizer_vocab_size``: at run time the model takes the tokenizer's
        vocabulary. Deciding it here makes config.yaml, ``--dry-run`` and the resume shape
        check see the model that will really be built.
        """
        from megatron.bridge.training.setup import _validate_and_set_vocab_size

        model, tokenizer = container.model, container.tokenizer
        vocab = tokenizer_vocab_size(tokenizer)
        if vocab is None:
            return
        try:
            size, pad = _validate_and_set_vocab_size(
                model.vocab_size, vocab, getattr(tokenizer, "use_tokenizer_vocab_size", False)
            )
        except ValueError as exc:
            self.problems.add(
                str(exc), key="model.vocab_size", source=self.user.source_of("model.vocab_size")
            )
            return
        source = derived_source(f"tokenizer vocabulary ({vocab})")
        if size != model.vocab_size:
            set_path(container, "model.vocab_size", size, source, provenance)
        if pad != getattr(model, "should_pad_vocab", False):
            set_path(container, "model.should_pad_vocab", pad, source, provenance)

    def _derive_batch(self, container: Any, provenance: Provenance) -> None:
        model, train = container.model, container.train
        parallel = (
            (model.tensor_model_parallel_size or 1)
            * (model.pipeline_model_parallel_size or 1)
            * (model.context_parallel_size or 1)
        )
        if self.world_size % parallel:
            return  # reported by the preflight checks
        dp = self.world_size // parallel
        step = train.micro_batch_size * dp
        if train.global_batch_size % step == 0:
            return
        if self._user_set("train.global_batch_size"):
            self.problems.add(
                f"global batch {train.global_batch_size} is not divisible by micro batch {train.micro_batch_size}"
                f" x data-parallel size {dp}",
                key="train.global_batch_size",
                source=self.user.source_of("train.global_batch_size"),
                hint=f"use a multiple of {step}",
            )
            return
        fixed = step * max(1, round(train.global_batch_size / step))
        set_path(
            container,
            "train.global_batch_size",
            fixed,
            derived_source("micro_batch_size*data_parallel_size"),
            provenance,
        )

    def _user_set(self, path: str) -> bool:
        return self.user.has(path)
