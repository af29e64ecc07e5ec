"""A trained model loaded for inference: ``primus generate`` and ``primus eval`` read it here.

The weights come from a Megatron checkpoint (a ``primus train`` run, a ``convert import``, an
adapters-only LoRA / DoRA checkpoint on its base) or straight from a HF directory (AutoBridge
converts in memory). The tokenizer is the HuggingFace one the run trained with: ``--tokenizer``,
else the run's ``tokenizer.tokenizer_model``, else the HF model the checkpoint came from.
Generation goes through Megatron-Core's inference engine (``generation.py``); logits through the
model's own forward.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from primus.backends.megatron_bridge.hf_conversion import (
    apply_settings,
    check_supported,
    load_megatron,
    megatron_session,
    model_settings,
    resolve_checkpoint,
    resolve_hf_dir,
)
from primus.core.capabilities import Completion, GenerationParams
from primus.core.environment import EnvFacts
from primus.core.errors import PrimusUserError

logger = logging.getLogger(__name__)


def resolve_model_checkpoint(path: str | os.PathLike) -> Path:
    """The iteration directory of ``path``: a checkpoint, or a run directory holding ``checkpoints/``."""
    root = Path(path).expanduser()
    if (root / "checkpoints").is_dir() and not (root / "run_config.yaml").is_file():
        root = root / "checkpoints"
    return resolve_checkpoint(root)


def _hf_tokenizer_dir(candidate: Any) -> Path | None:
    if not candidate:
        return None
    path = Path(str(candidate)).expanduser()
    has_files = any((path / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json"))
    return path if path.is_dir() and has_files else None


def checkpoint_tokenizer_dir(ckpt_iter: Path, run_config: dict[str, Any]) -> Path:
    """The HF tokenizer a checkpoint was trained with (see the module docstring for the order)."""
    tok = run_config.get("tokenizer") or {}
    ckpt = run_config.get("checkpoint") or {}
    model = run_config.get("model") or {}
    candidates = [tok.get("tokenizer_model") if tok.get("tokenizer_type") == "HuggingFaceTokenizer" else None]
    candidates += [ckpt.get("pretrained_checkpoint"), ckpt.get("hf_source_path"), model.get("hf_model_id")]
    candidates.append(ckpt_iter / "tokenizer")
    for candidate in candidates:
        found = _hf_tokenizer_dir(candidate)
        if found is not None:
            return found
    raise PrimusUserError(
        f"checkpoint {ckpt_iter} names no HuggingFace tokenizer that exists here",
        key="--tokenizer",
        hint="pass --tokenizer DIR (the tokenizer the model was trained with)",
    )


@dataclass
class MegatronInferenceModel:
    """A Megatron model in eval mode, its tokenizer and where both came from."""

    model: Any
    tokenizer: Any
    env: EnvFacts
    source: Path
    description: str

    @property
    def vocab_size(self) -> int:
        """The tokenizer's vocabulary (Megatron's output layer may be padded beyond it)."""
        return len(self.tokenizer)

    @property
    def max_sequence_length(self) -> int:
        config = self.model.config
        return int(getattr(self.model, "max_sequence_length", 0) or getattr(config, "seq_length", 0) or 4096)

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def logits(self, tokens: Any) -> Any:
        """Next-token logits (fp32, the tokenizer's vocabulary) of ``tokens`` [batch, seq], causal."""
        import torch

        tokens = tokens.to(self.device)
        batch, seq = tokens.shape
        positions = torch.arange(seq, device=self.device).unsqueeze(0).expand(batch, seq)
        causal = torch.triu(torch.ones(1, 1, seq, seq, dtype=torch.bool, device=self.device), 1)
        with torch.no_grad():
            out = self.model(
                input_ids=tokens, position_ids=positions, attention_mask=causal, runtime_gather_output=True
            )
        return out[..., : self.vocab_size].float()

    def generate(
        self, prompts: list[list[int]], params: GenerationParams, on_text: Any = None
    ) -> list[Completion]:
        from primus.backends.megatron_bridge.generation import generate

        return generate(self, prompts, params, on_text=on_text)


def _load_checkpoint(ckpt_iter: Path, env: EnvFacts, hf_source: str | None, fp32: bool) -> tuple[Any, str]:
    from primus.backends.megatron_bridge.peft_export import (
        _megatron_base,
        base_hf_dir,
        build_peft,
        load_finetuned,
        read_run_config,
    )

    run_config = read_run_config(ckpt_iter)
    if not run_config.get("peft"):
        return load_megatron(ckpt_iter, env, fp32=fp32)[0], f"checkpoint {ckpt_iter}"
    from megatron.bridge import AutoBridge

    base = base_hf_dir(hf_source, run_config, ckpt_iter)
    check_supported(base, key="--tokenizer")
    peft = build_peft(run_config["peft"], str(ckpt_iter / "run_config.yaml"))
    bridge = AutoBridge.from_hf_pretrained(str(base))
    model = load_finetuned(bridge, peft, ckpt_iter, env, _megatron_base(run_config))[0]
    return model, f"{type(peft).__name__} checkpoint {ckpt_iter} on {base}"


def _load_hf(hf_dir: Path, env: EnvFacts, fp32: bool, trust_remote_code: bool) -> Any:
    from megatron.bridge import AutoBridge

    check_supported(hf_dir)
    bridge = AutoBridge.from_hf_pretrained(str(hf_dir), trust_remote_code=trust_remote_code)
    provider = bridge.to_megatron_provider(load_weights=True)
    apply_settings(provider, model_settings(env, fp32=fp32))
    provider.finalize()
    return provider.provide_distributed_model(wrap_with_ddp=False, use_cpu_initialization=env.on_cpu)[0]


@contextlib.contextmanager
def open_model(
    *,
    ckpt: str | os.PathLike | None = None,
    hf: str | os.PathLike | None = None,
    tokenizer: str | os.PathLike | None = None,
    device: str = "auto",
    fp32: bool = False,
    trust_remote_code: bool = False,
) -> Iterator[MegatronInferenceModel]:
    """The model of ``ckpt`` (or of the HF directory ``hf``), for as long as the block runs.

    fp32 on a CPU always; on a GPU the checkpoint's own precision unless ``fp32``."""
    if (ckpt is None) == (hf is None):
        raise PrimusUserError(
            "name one model", key="--ckpt/--hf", hint="pass --ckpt RUN_OR_CKPT_DIR or --hf DIR"
        )
    from primus.backends.megatron_bridge.peft_export import read_run_config

    if ckpt is not None:
        ckpt_iter = resolve_model_checkpoint(ckpt)
        tok_dir = (
            resolve_hf_dir(tokenizer, key="--tokenizer")
            if tokenizer
            else checkpoint_tokenizer_dir(ckpt_iter, read_run_config(ckpt_iter))
        )
    else:
        hf_dir = resolve_hf_dir(hf)
        tok_dir = resolve_hf_dir(tokenizer, key="--tokenizer") if tokenizer else hf_dir
    with megatron_session(device) as env:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(tok_dir), trust_remote_code=trust_remote_code)
        if ckpt is not None:
            model, description = _load_checkpoint(ckpt_iter, env, str(tokenizer) if tokenizer else None, fp32)
            source = ckpt_iter
        else:
            model, description, source = (
                _load_hf(hf_dir, env, fp32, trust_remote_code),
                f"HF model {hf_dir}",
                hf_dir,
            )
        import torch

        model = model.to(torch.device("cpu") if env.on_cpu else torch.device("cuda")).eval()
        if hasattr(model, "config"):
            model.config.grad_scale_func = None
        logger.info("model: %s (tokenizer %s) on %s", description, tok_dir, env.device)
        yield MegatronInferenceModel(model, tok, env, source, description)
