"""MegatronBridgeArgBuilder: defaults < recipe < YAML sections < CLI, into a ``ConfigContainer``.

The user's layer (YAML + CLI, with file:line / cli provenance) comes from
``primus.core.config``; this module lays it over the recipe's container (or Bridge's common
pretraining defaults with a Llama-style model when no recipe is given), maps the Primus keys
(``data_path``, ``run_dir``, ``resume``...) onto it and derives the values users should not
have to compute. Every value keeps its source.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from primus.backends.megatron_bridge import CONFIG_SECTIONS, tracking
from primus.backends.megatron_bridge.config_tree import Provenance, apply_section, set_path
from primus.backends.megatron_bridge.data import parse_data_path
from primus.backends.megatron_bridge.derived_values import PRIMUS_MODEL_KEYS, DerivedValues
from primus.backends.megatron_bridge.finetune_setup import FinetuneSetup, is_finetune, resolve_workload
from primus.backends.megatron_bridge.training_samples import SAMPLE_KEYS, sample_settings
from primus.core.config.resolved import CLI, DEFAULT, ResolvedConfig, derived_source, recipe_source
from primus.core.environment import EnvFacts
from primus.core.errors import ProblemCollector

logger = logging.getLogger(__name__)

#: Llama-style architecture for models built from a ``model:`` section without a recipe.
SCRATCH_MODEL_DEFAULTS: dict[str, Any] = {
    "normalization": "RMSNorm",
    "gated_linear_unit": True,
    "activation_func": "silu",
    "position_embedding_type": "rope",
    "add_bias_linear": False,
    "add_qkv_bias": False,
    "share_embeddings_and_output_weights": False,
    "rotary_base": 10000,
    "layernorm_epsilon": 1e-5,
    "hidden_dropout": 0.0,
    "attention_dropout": 0.0,
    "init_method_std": 0.02,
    "seq_length": 2048,
    "make_vocab_size_divisible_by": 128,
}
#: Primus's own defaults on top of any recipe (dotted path -> value), unless the user sets them
PRIMUS_DEFAULTS: dict[str, Any] = {
    "train.exit_signal_handler": True,  # SIGTERM: save a checkpoint, then stop (resumable)
}
PRIMUS_DEFAULT_SOURCE = "default:primus"
NULL_TOKENIZER_VOCAB = 32000
#: model fields a recipe keeps when --convert_from_hf takes the architecture from the HF config
HF_KEEP_FROM_RECIPE = (
    "tensor_model_parallel_size",
    "pipeline_model_parallel_size",
    "context_parallel_size",
    "sequence_parallel",
    "seq_length",
)


@dataclasses.dataclass
class BuiltConfig:
    """The native config plus where each of its values came from."""

    container: Any
    provenance: Provenance
    recipe: str | None
    user: ResolvedConfig
    workload: str = "pretrain"
    #: fine-tuning: the user's records as inspected (``primus.data.sft_data.SFTData``)
    sft_data: Any = None
    #: ``logger.sample_*``: generations during training (``training_samples.SampleSettings``)
    samples: Any = None

    def view(self) -> ResolvedConfig:
        """Primus keys + every ConfigContainer section, each leaf with its source."""
        out = ResolvedConfig()
        for key in self.user.data:
            if key not in CONFIG_SECTIONS:
                out.set(key, self.user.get(key), self.user.source_of(key) or DEFAULT)
        out.merge(self.provenance.view(self.container, CONFIG_SECTIONS))
        return out


class MegatronBridgeArgBuilder:
    """Builds a validated ``ConfigContainer`` from the user's config, recording provenance."""

    def __init__(
        self, user: ResolvedConfig, env: EnvFacts, world_size: int = 1, *, describe_only: bool = False
    ) -> None:
        """``describe_only``: build to show a config (``recipes show``): a fine-tuning build
        without records or starting weights is described, not refused."""
        self.user = user
        self.describe_only = describe_only
        self.env = env
        self.world_size = world_size
        self.problems = ProblemCollector()

    # -- public ---------------------------------------------------------------------------
    def build(self) -> BuiltConfig:
        recipe = self.user.get("recipe", None)
        workload, workload_source = resolve_workload(self.user, recipe)
        if not self.user.get("workload", None):
            self.user.set("workload", workload, workload_source)
        finetune = is_finetune(workload)
        container, provenance = self._base(recipe, workload)
        if self.user.get("convert_from_hf", False) or (
            finetune and self.user.get("hf_model_name_or_path", None)
        ):
            self._model_from_hf(container, provenance)
        finetune_setup = (
            FinetuneSetup(self.user, workload, self.problems, self.world_size, self.describe_only)
            if finetune
            else None
        )
        if finetune_setup:
            finetune_setup.apply(container, provenance)
        elif recipe and (container.peft is not None or hasattr(container.dataset, "dataset_root")):
            self.problems.add(
                f"recipe {recipe} fine-tunes; workload pretrain cannot run it",
                key="workload",
                source=self.user.source_of("workload"),
                hint="use --workload sft / lora / dora with it, or a pretrain recipe",
            )
        self._apply_user_sections(container, provenance)
        self._apply_primus_keys(container, provenance)
        DerivedValues(self.user, self.problems, self.world_size).apply(container, provenance)
        if finetune_setup:
            finetune_setup.finish(container, provenance)
        self._check_hf_export()
        samples = self._check_samples(container)
        self.problems.raise_if_any()
        sft_data = finetune_setup.data if finetune_setup else None
        return BuiltConfig(container, provenance, recipe, self.user, workload, sft_data, samples)

    # -- layers ---------------------------------------------------------------------------
    def _base(self, recipe: str | None, workload: str) -> tuple[Any, Provenance]:
        if recipe:
            from primus.backends.megatron_bridge.recipes import build_recipe, resolve_recipe

            info = resolve_recipe(recipe)
            logger.debug("recipe %s -> %s", recipe, info.name)
            hf_path = self.user.get("hf_model_name_or_path", None)
            hf_dir = hf_path if hf_path and Path(hf_path).is_dir() else None
            return build_recipe(info.name, hf_config_dir=hf_dir), Provenance(recipe_source(recipe))
        from megatron.bridge.models.gpt_provider import GPTModelProvider
        from megatron.bridge.recipes.common import _pretrain_common
        from megatron.bridge.training.tokenizers.config import TokenizerConfig

        if is_finetune(workload):
            from primus.backends.megatron_bridge.finetune_setup import base_config

            container = base_config(workload)
        else:
            container = _pretrain_common()
        provenance = Provenance(DEFAULT)
        container.model = GPTModelProvider()
        model_values = dict(SCRATCH_MODEL_DEFAULTS)
        problems = ProblemCollector()
        defaults = ResolvedConfig()
        defaults.set("model", model_values, DEFAULT)
        apply_section(container.model, model_values, "model", defaults, provenance, problems)
        problems.raise_if_any()
        if not is_finetune(workload):  # fine-tuning: the HF model's tokenizer, or the user's
            container.tokenizer = TokenizerConfig(
                tokenizer_type="NullTokenizer", vocab_size=NULL_TOKENIZER_VOCAB
            )
        return container, provenance

    def _model_from_hf(self, container: Any, provenance: Provenance) -> None:
        """--convert_from_hf: the architecture from the HF config, the weights from its checkpoint."""
        from primus.backends.megatron_bridge.hf_conversion import hf_model_provider

        key, source = "hf_model_name_or_path", self.user.source_of("hf_model_name_or_path")
        if not self.user.get(key, None):
            self.problems.add(
                "convert_from_hf needs a HF model", key=key, hint="pass --hf_model_name_or_path DIR"
            )
            return
        provider, hf_dir = hf_model_provider(
            self.user.get(key), bool(self.user.get("trust_remote_code", False)), key=key, source=source
        )
        if self.user.get("recipe", None):  # keep the recipe's parallel layout and sequence length
            for name in HF_KEEP_FROM_RECIPE:
                if hasattr(container.model, name):
                    setattr(provider, name, getattr(container.model, name))
        container.model = provider
        provenance.record("model", f"hf:{hf_dir}")
        derived = derived_source("convert_from_hf")
        if not self._user_set("checkpoint.pretrained_checkpoint"):  # else: an imported checkpoint
            set_path(container, "checkpoint.pretrained_checkpoint", str(hf_dir), derived, provenance)
        set_path(container, "checkpoint.hf_source_path", str(hf_dir), derived, provenance)
        if self.user.get("trust_remote_code", False):
            set_path(container, "checkpoint.hf_trust_remote_code", True, derived, provenance)
        self._tokenizer_from_hf(container, provenance, Path(hf_dir), provider.vocab_size)

    def _tokenizer_from_hf(self, container: Any, provenance: Provenance, hf_dir: Path, vocab: int) -> None:
        """The HF model's own tokenizer, unless the user chose one; the HF weights fix the vocabulary."""
        from primus.backends.megatron_bridge.patches.conversion import has_tokenizer

        if self._user_set("tokenizer"):
            return
        if not self._user_set("tokenizer.use_tokenizer_vocab_size"):
            set_path(
                container,
                "tokenizer.use_tokenizer_vocab_size",
                False,
                derived_source("convert_from_hf: the checkpoint fixes the vocabulary"),
                provenance,
            )
        if has_tokenizer(hf_dir):
            source = f"hf:{hf_dir}"
            set_path(container, "tokenizer.tokenizer_type", "HuggingFaceTokenizer", source, provenance)
            set_path(container, "tokenizer.tokenizer_model", str(hf_dir), source, provenance)
        elif getattr(container.tokenizer, "tokenizer_type", None) == "NullTokenizer":
            # mock / pre-tokenized data: token ids must stay inside the HF model's vocabulary
            set_path(
                container, "tokenizer.vocab_size", vocab - 1, derived_source("convert_from_hf"), provenance
            )

    def _apply_user_sections(self, container: Any, provenance: Provenance) -> None:
        for section in CONFIG_SECTIONS:
            if section not in self.user.data:
                continue
            values = self.user.get(section)
            source = self.user.source_of(section)
            if section == "model" and isinstance(values, dict):
                values = {k: v for k, v in values.items() if k not in PRIMUS_MODEL_KEYS}
            if section == "logger" and isinstance(values, dict):
                values = {k: v for k, v in values.items() if k not in SAMPLE_KEYS}
            target = getattr(container, section, None)
            if isinstance(values, dict) and target is not None and dataclasses.is_dataclass(target):
                apply_section(target, values, section, self.user, provenance, self.problems)
            elif (
                isinstance(values, dict)
                and target is None
                and section in ("mixed_precision", "peft", "comm_overlap")
            ):
                self.problems.add(
                    f"the {section} section needs a base from a recipe; give a preset name instead",
                    key=section,
                    source=source,
                    hint="e.g. mixed_precision: bf16_mixed",
                )
            elif isinstance(values, dict) and target is None:
                self.problems.add(f"section {section} is not configurable here", key=section, source=source)
            else:
                setattr(container, section, values)
                provenance.record(section, source or CLI)

    def _apply_primus_keys(self, container: Any, provenance: Provenance) -> None:
        user = self.user
        for path, value in PRIMUS_DEFAULTS.items():
            if not self._user_set(path):
                set_path(container, path, value, PRIMUS_DEFAULT_SOURCE, provenance)
        run_dir = Path(user.get("run_dir"))
        blend = self._pretraining_blend()
        if blend is not None:
            set_path(
                container, "dataset.blend", blend.as_megatron_blend(), user.source_of("data_path"), provenance
            )
        elif (
            getattr(container.dataset, "blend", None) is None
            and getattr(container.dataset, "data_path", None) is None
        ):
            logger.debug("no data_path: training on mock data (random tokens)")

        if not self._user_set("checkpoint.save"):
            set_path(
                container,
                "checkpoint.save",
                str(run_dir / "checkpoints"),
                derived_source("run_dir"),
                provenance,
            )
        if not self._user_set("logger.tensorboard_dir"):
            set_path(
                container,
                "logger.tensorboard_dir",
                str(run_dir / "tensorboard"),
                derived_source("run_dir"),
                provenance,
            )
        tracking.fill_defaults(container, user, provenance, run_dir)
        if not self._user_set("checkpoint.load"):
            load = container.checkpoint.save if user.get("resume", False) else None
            set_path(
                container,
                "checkpoint.load",
                load,
                derived_source("resume" if load else "no_resume"),
                provenance,
            )
        self._continue_saved_schedule(container, provenance)

    def _pretraining_blend(self):
        """``data_path`` as indexed-dataset prefixes (fine-tuning reads it as JSONL instead)."""
        from primus.data.sft_data import is_sft_data_path

        value, source = self.user.get("data_path", None), self.user.source_of("data_path")
        if is_finetune(self.user.get("workload")):
            return None
        if value and is_sft_data_path(value):
            self.problems.add(
                "JSONL records are for fine-tuning; pretraining reads indexed datasets",
                key="data_path",
                source=source,
                hint="add --workload sft (or lora / dora) and --hf_model_name_or_path DIR, or "
                "tokenize raw text with `primus data prepare`",
            )
            return None
        return parse_data_path(value, source, self.problems)

    def _continue_saved_schedule(self, container: Any, provenance: Provenance) -> None:
        """A resumed run continues the LR schedule saved in its checkpoint.

        Recipes set ``override_opt_param_scheduler``, under which Megatron rebuilds the
        schedule from this config: a longer ``train_iters`` then restarts the decay and the LR
        jumps back up at the resume point. Unless the user chose, the checkpoint's wins.
        """
        keys = ("scheduler.override_opt_param_scheduler", "scheduler.use_checkpoint_opt_param_scheduler")
        if not container.checkpoint.load or any(self._user_set(k) for k in keys):
            return
        source = derived_source("resume: continue the checkpoint's LR schedule")
        set_path(container, keys[0], False, source, provenance)
        set_path(container, keys[1], True, source, provenance)

    def _check_samples(self, container: Any) -> Any:
        """``logger.sample_*``: valid values, a HF tokenizer to read prompts with, one model copy."""
        settings, problems = sample_settings(self.user)
        self.problems.extend(problems)
        if settings is None:
            return None
        source = self.user.source_of("logger")
        tok = container.tokenizer
        if getattr(tok, "tokenizer_type", None) != "HuggingFaceTokenizer" or not tok.tokenizer_model:
            self.problems.add(
                "sample generations need a HuggingFace tokenizer to read the prompts",
                key="logger.sample_prompts",
                source=source,
                hint="set tokenizer.tokenizer_type=HuggingFaceTokenizer tokenizer.tokenizer_model=DIR, or drop the prompts",
            )
        m = container.model
        if m.tensor_model_parallel_size * m.pipeline_model_parallel_size > 1:
            self.problems.add(
                "sample generations during training need the whole model on one rank (TP = PP = 1)",
                key="logger.sample_prompts",
                source=source,
                hint="generate from the checkpoint afterwards: `primus generate --ckpt RUN_DIR`",
            )
        return settings

    def _check_hf_export(self) -> None:
        if self.user.get("convert_to_hf", False) and not self.user.get("hf_model_name_or_path", None):
            self.problems.add(
                "convert_to_hf needs a HF model directory of the same architecture (config + tokenizer)",
                key="convert_to_hf",
                source=self.user.source_of("convert_to_hf"),
                hint="pass --hf_model_name_or_path DIR",
            )

    def _user_set(self, path: str) -> bool:
        return self.user.has(path)
