"""Fine-tuning builds (workload sft / lora / dora): what differs from pretraining.

A fine-tuning run starts from trained weights (an HF directory, or an imported Megatron
checkpoint in ``checkpoint.pretrained_checkpoint``), reads the user's JSONL records (chat or
prompt/completion) through Megatron-Bridge's ``GPTSFTDatasetConfig``, and, for lora / dora,
trains Bridge's adapters only. Bridge's ``_sft_`` / ``_peft_`` recipes train on SQuAD from
the hub by default; here their dataset always becomes the user's files, staged into
``RUN_DIR/sft_data`` (Bridge writes its index caches next to the JSONL it reads).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from primus.backends.megatron_bridge.config_tree import Provenance, set_path
from primus.core.config.resolved import DEFAULT, ResolvedConfig, derived_source, recipe_source
from primus.core.config.schema import FINETUNE_WORKLOADS
from primus.core.errors import PrimusUserError, ProblemCollector

logger = logging.getLogger(__name__)

#: Bridge's common base config per workload, when no recipe is named
BASE_CONFIGS = {"sft": "_sft_common", "lora": "_peft_common", "dora": "_peft_common"}
#: Bridge's adapter class per workload
PEFT_CLASSES = {"lora": ("megatron.bridge.peft.lora", "LoRA"), "dora": ("megatron.bridge.peft.dora", "DoRA")}
#: Bridge's dataloader settings kept from a recipe's dataset when it is replaced
KEPT_DATASET_FIELDS = ("seed", "num_workers", "pin_memory", "persistent_workers", "data_sharding")
SFT_DATA_DIR = "sft_data"
#: fewest tokens a record takes (template and end token included), to bound how many packs hold them
MIN_RECORD_TOKENS = 8


def resolve_workload(user: ResolvedConfig, recipe: str | None) -> tuple[str, str]:
    """The workload and its source: the user's, else the recipe's kind, else pretrain."""
    chosen = user.get("workload", None)
    if chosen:
        return chosen, user.source_of("workload") or DEFAULT
    if recipe:
        from primus.backends.megatron_bridge.recipes import resolve_recipe

        name = resolve_recipe(recipe).name
        if "_peft_" in name:
            return "lora", recipe_source(recipe)
        if "_sft_" in name:
            return "sft", recipe_source(recipe)
    return "pretrain", DEFAULT


def is_finetune(workload: str) -> bool:
    return workload in FINETUNE_WORKLOADS


def _model_parallel(model: Any) -> int:
    return (
        (model.tensor_model_parallel_size or 1)
        * (model.pipeline_model_parallel_size or 1)
        * (model.context_parallel_size or 1)
    )


def base_config(workload: str) -> Any:
    """Bridge's common SFT / PEFT defaults (LR, warm-up, batch) for a run without a recipe."""
    from megatron.bridge.recipes import common

    return getattr(common, BASE_CONFIGS[workload])()


def sft_preprocessing(chat: bool, loss: str) -> Any:
    """Bridge's preprocessing of the records (the tokens and the loss mask), for ``sft_loss`` ``loss``.

    ``primus eval`` reads held-out records with the same one."""
    from megatron.bridge.data.builders import (
        ChatSFTPreprocessingConfig,
        PromptCompletionSFTPreprocessingConfig,
    )

    if chat:
        return ChatSFTPreprocessingConfig(loss_mode=loss)
    # Bridge recipes' layout: the completion follows the prompt after one space
    return PromptCompletionSFTPreprocessingConfig(
        prompt_column="prompt",
        completion_column="completion",
        separator=" ",
        loss_mode="full" if loss == "full" else "completion",
    )


class FinetuneSetup:
    """Sets the dataset, adapters and starting weights of one fine-tuning build."""

    def __init__(
        self,
        user: ResolvedConfig,
        workload: str,
        problems: ProblemCollector,
        world_size: int = 1,
        describe_only: bool = False,
    ) -> None:
        self.user = user
        self.describe_only = describe_only
        self.world_size = world_size
        self.workload = workload
        self.problems = problems
        self.source = derived_source(f"workload {workload}")
        self._chat = False
        #: the user's records as inspected (staged into the run directory by the trainer)
        self.data: Any = None

    def apply(self, container: Any, provenance: Provenance) -> None:
        """Before the user's sections, which may refine what is set here (dataset.*, peft.*)."""
        self._peft(container, provenance)
        self._dataset(container, provenance)

    def finish(self, container: Any, provenance: Provenance) -> None:
        """After the user's sections and the derived values: checks on the final config."""
        specs = getattr(container.dataset, "offline_packing_specs", None)
        if specs is not None and not self.user.has("dataset.offline_packing_specs.packed_sequence_size"):
            specs.packed_sequence_size = container.dataset.seq_length
        if self._chat:
            self._chat_template(container, provenance)
        if not self.user.has("logger.log_interval") and not self.user.get("recipe", None):
            iters = container.train.train_iters or 0
            every = max(1, iters // 20)  # about 20 progress lines a run (Bridge's base: every iteration)
            set_path(container, "logger.log_interval", every, derived_source("train_iters / 20"), provenance)
        if self.data is not None:
            self._training_batch(container)
            self._validation_batch(container, provenance)
        self._starting_weights(container)

    def _training_batch(self, container: Any) -> None:
        """One global batch must fit in the training records (Bridge refuses fewer, after loading)."""
        from primus.data.sft_data import validation_count

        if getattr(container.dataset, "enable_offline_packing", False):
            return  # how many sequences packing makes shows once packed (bridge_errors)
        records = self.data.training_records
        if not self.data.validation:
            records -= validation_count(self.data, self.user.get("sft_validation_fraction"))
        batch = container.train.global_batch_size
        if records < batch:
            self.problems.add(
                f"{records} training records and one global batch needs {batch}",
                key="train.global_batch_size",
                source=self.user.source_of("train.global_batch_size") or self._default_source(),
                hint=f"set train.global_batch_size={records} or less, or add records",
            )

    def _default_source(self) -> str:
        recipe = self.user.get("recipe", None)
        return recipe_source(recipe) if recipe else f"default ({BASE_CONFIGS[self.workload]})"

    def _validation_batch(self, container: Any, provenance: Provenance) -> None:
        """Fit the validation batch to a small validation split.

        Bridge's validation sampler needs one whole global batch of samples (it asserts, mid-run,
        otherwise): with fewer records than ``train.global_batch_size``, validation runs in the
        largest batch the records fill, one pass per evaluation. Packed, a sample holds several
        records and their number is only known once packed: validation then runs one sequence
        per data-parallel rank at a time unless the records surely fill a batch.
        """
        from primus.data.sft_data import validation_count

        val = container.validation
        if not val.eval_iters or not val.eval_interval:
            return
        records = validation_count(self.data, self.user.get("sft_validation_fraction"))
        dp = max(1, self.world_size // _model_parallel(container.model))
        global_batch = val.eval_global_batch_size or container.train.global_batch_size
        packed = bool(getattr(container.dataset, "enable_offline_packing", False))
        samples = records * MIN_RECORD_TOKENS // container.dataset.seq_length if packed else records
        if samples >= global_batch:
            return
        keys = ("validation.eval_global_batch_size", "validation.eval_micro_batch_size")
        if any(self.user.has(k) for k in keys) or records < dp:
            self.problems.add(
                f"the validation split has {records} records and one validation batch needs {global_batch}",
                key="validation.eval_global_batch_size",
                source=self.user.source_of(keys[0]) or self.user.source_of("data_path"),
                hint="add validation records (validation.jsonl), raise sft_validation_fraction, "
                "or set validation.eval_iters=0",
            )
            return
        micro = (
            1 if packed else min(val.eval_micro_batch_size or container.train.micro_batch_size, records // dp)
        )
        batch = dp if packed else (records // (micro * dp)) * micro * dp
        source = derived_source(f"{records} validation records" + (", packed" if packed else ""))
        set_path(container, keys[0], batch, source, provenance)
        set_path(container, keys[1], micro, source, provenance)
        if val.eval_iters > 1 and not self.user.has("validation.eval_iters"):
            set_path(container, "validation.eval_iters", 1, source, provenance)

    # -- adapters -------------------------------------------------------------------------
    def _peft(self, container: Any, provenance: Provenance) -> None:
        """lora / dora: Bridge's adapter class (the recipe's settings when it has that class)."""
        if self.workload == "sft":
            if container.peft is not None:
                set_path(container, "peft", None, self.source, provenance)
            return
        import importlib

        module, name = PEFT_CLASSES[self.workload]
        cls = getattr(importlib.import_module(module), name)
        if type(container.peft) is not cls:
            kept = {}
            if container.peft is not None:  # a recipe's LoRA settings carry over to DoRA
                fields = {f.name for f in dataclasses.fields(cls)}
                kept = {
                    k: getattr(container.peft, k)
                    for k in ("target_modules", "dim", "alpha", "dropout")
                    if k in fields and hasattr(container.peft, k)
                }
            container.peft = cls(**kept)
            provenance.record("peft", self.source)

    # -- data -----------------------------------------------------------------------------
    def _dataset(self, container: Any, provenance: Provenance) -> None:
        """The user's JSONL records replace the recipe's dataset (SQuAD from the hub)."""
        from primus.data.sft_data import inspect_sft_data, is_sft_data_path

        key = "data_path"
        data_path, source = self.user.get(key, None), self.user.source_of(key)
        if not data_path and self.describe_only:
            return
        if not data_path:
            self.problems.add(
                f"{self.workload} fine-tuning reads your records and none were given",
                key=key,
                source=source,
                hint="pass --data_path FILE.jsonl (chat 'messages' or 'prompt'/'completion' records) "
                "or a directory with training.jsonl [validation.jsonl]",
            )
            return
        if not is_sft_data_path(data_path):
            self.problems.add(
                f"{data_path!r} is not JSONL records: fine-tuning reads .jsonl files or a directory "
                "with training.jsonl",
                key=key,
                source=source,
                hint="indexed-dataset prefixes (primus data prepare) are for --workload pretrain",
            )
            return
        try:
            data = inspect_sft_data(data_path, source=source)
        except PrimusUserError as exc:
            self.problems.extend(exc.problems)
            return
        fraction = self.user.get("sft_validation_fraction")
        if not data.validation and not 0 < fraction < 1:
            self.problems.add(
                f"must be between 0 and 1, got {fraction}",
                key="sft_validation_fraction",
                source=self.user.source_of("sft_validation_fraction"),
            )
        self.data = data
        self._chat = data.format == "chat"
        self._set_dataset(container, provenance, self._chat)
        provenance.record("dataset.dataset_root", source or self.source)
        logger.debug(
            "fine-tuning data: %s records (%s), %s validation",
            data.training_records,
            data.format,
            data.validation_records or f"{fraction:.0%} held out",
        )

    def _set_dataset(self, container: Any, provenance: Provenance, chat: bool) -> None:
        from megatron.bridge.data.builders import GPTSFTDatasetConfig
        from megatron.bridge.data.packing import PackedSequenceSpecs

        preprocessing = sft_preprocessing(chat, self.user.get("sft_loss"))
        old = container.dataset
        kept = {k: getattr(old, k) for k in KEPT_DATASET_FIELDS if hasattr(old, k)}
        packed = self._packing(old)
        seq = container.model.seq_length
        container.dataset = GPTSFTDatasetConfig(
            seq_length=seq,
            dataset_root=str(Path(self.user.get("run_dir")) / SFT_DATA_DIR),
            preprocessing=preprocessing,
            do_validation=True,
            do_test=False,
            enable_offline_packing=packed,
            offline_packing_specs=PackedSequenceSpecs(packed_sequence_size=seq) if packed else None,
            **kept,
        )
        provenance.record("dataset", self.source)
        if packed and container.train.micro_batch_size != 1 and not self.user.has("train.micro_batch_size"):
            set_path(container, "train.micro_batch_size", 1, derived_source("pack_sequences"), provenance)

    def _packing(self, recipe_dataset: Any) -> bool:
        chosen = self.user.get("pack_sequences", None)
        if chosen is not None:
            return bool(chosen)
        if self.user.get("recipe", None):
            return bool(getattr(recipe_dataset, "enable_offline_packing", False))
        return False

    def _chat_template(self, container: Any, provenance: Provenance) -> None:
        """Chat records need a chat template: the tokenizer's, or --chat_template FILE."""
        from primus.backends.megatron_bridge.chat_masks import assistant_mask_problem
        from primus.data.sft_data import chat_template_problem, unended_turn_warning

        template = self.user.get("chat_template", None)
        tokenizer_dir = getattr(container.tokenizer, "tokenizer_model", None)
        if template:
            set_path(
                container,
                "tokenizer.chat_template_path",
                str(Path(template).expanduser()),
                self.user.source_of("chat_template") or self.source,
                provenance,
            )
        if tokenizer_dir and Path(str(tokenizer_dir)).is_dir():
            problem = chat_template_problem(str(tokenizer_dir), template)
            if problem:
                self.problems.add(problem, key="chat_template", source=self.user.source_of("data_path"))
                return
            masked = assistant_mask_problem(
                self.data,
                str(tokenizer_dir),
                template,
                self.user.get("sft_loss"),
                self.user.source_of("sft_loss"),
            )
            if masked:
                self.problems.extend([masked])
            elif not self.describe_only:
                warning = unended_turn_warning(str(tokenizer_dir), template)
                if warning:
                    logger.warning("%s", warning)

    # -- starting point -------------------------------------------------------------------
    def _starting_weights(self, container: Any) -> None:
        ckpt = container.checkpoint
        if ckpt.pretrained_checkpoint or self.user.get("resume", False) or self.describe_only:
            return
        self.problems.add(
            f"{self.workload} fine-tuning starts from a trained model and none was given",
            key="hf_model_name_or_path",
            source=self.user.source_of("hf_model_name_or_path"),
            hint="pass --hf_model_name_or_path DIR (a HuggingFace model directory), or "
            "checkpoint.pretrained_checkpoint=CKPT (e.g. from primus convert import)",
        )
