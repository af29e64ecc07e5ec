"""``setup`` patch for HF export: a source model without tokenizer files still exports.

Megatron-Bridge's ``save_hf_pretrained`` copies the source's artifacts and treats the tokenizer
as required: for a source directory without tokenizer files ``AutoTokenizer.from_pretrained``
raises and the export fails after the weights are written. Bridge already skips an artifact that
is ``None``; this patch returns ``None`` for exactly that case (a local directory with no
tokenizer file) and leaves every other load to Bridge.
"""

from __future__ import annotations

import logging
from pathlib import Path

from primus.backends.megatron_bridge import NAME
from primus.core.patches import PatchContext, register_patch

logger = logging.getLogger(__name__)

#: files any HF tokenizer is loaded from
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "vocab.json")


def has_tokenizer(hf_dir: Path) -> bool:
    return any((hf_dir / name).is_file() for name in TOKENIZER_FILES)


def install_tokenizerless_export() -> None:
    from megatron.bridge.models.hf_pretrained.causal_lm import PreTrainedCausalLM

    load = PreTrainedCausalLM._load_tokenizer
    if getattr(load, "_primus_tokenizerless", False):
        return

    def _load_tokenizer(self):
        source = self.model_name_or_path
        if source is not None and Path(str(source)).is_dir() and not has_tokenizer(Path(str(source))):
            logger.info("%s has no tokenizer files: the export has none either", source)
            return None
        return load(self)

    _load_tokenizer._primus_tokenizerless = True  # type: ignore[attr-defined]
    PreTrainedCausalLM._load_tokenizer = _load_tokenizer


@register_patch(
    "megatron_bridge.tokenizerless_export",
    backend=NAME,
    phase="setup",
    description="HF export from a source without tokenizer files skips the tokenizer instead of failing",
)
def tokenizerless_export(ctx: PatchContext) -> None:
    install_tokenizerless_export()
