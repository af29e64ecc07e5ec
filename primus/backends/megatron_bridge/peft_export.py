"""A fine-tuned checkpoint that holds only LoRA / DoRA adapters -> HuggingFace.

A PEFT run of Megatron-Bridge saves the adapter tensors only (its ``run_config.yaml`` has a
``peft:`` section), so ``load_megatron_model`` cannot rebuild the model from it. Here the model
is built from the base HF directory with this machine's settings (``model_settings``), the PEFT
is applied before wrapping (as ``finetune()`` does), the base weights of a Megatron
``pretrained_checkpoint`` and then the adapter tensors are loaded, and AutoBridge writes:

* the merged model (``save_hf_pretrained(merge_adapter_weights=True)``) to ``out``;
* for LoRA, the HF PEFT adapter (``save_hf_adapter``: adapter_config.json +
  adapter_model.safetensors) to ``adapter_dir``.

Bridge 0.6.2 ignores DoRA's magnitude vectors in both exports (its merge adds ``s * B A`` only,
its PEFT state has no ``lora_magnitude_vector``). Here the DoRA weight
``m * (W + s B A) / ||W + s B A||`` is folded into the base layer first, so the merged export is
exact, and no DoRA adapter directory is written. (``AutoBridge.export_adapter_ckpt`` is not used:
its provider skips the TE-free settings.)
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from primus.backends.megatron_bridge.hf_conversion import (
    ConversionResult,
    _check_output_dir,
    apply_settings,
    check_supported,
    megatron_session,
    model_settings,
    resolve_checkpoint,
    resolve_hf_dir,
)
from primus.core.errors import PrimusUserError

logger = logging.getLogger(__name__)

#: run_config.yaml ``peft._target_`` -> (module, class) this export rebuilds
PEFT_CLASSES = {
    "megatron.bridge.peft.lora.LoRA": ("megatron.bridge.peft.lora", "LoRA"),
    "megatron.bridge.peft.dora.DoRA": ("megatron.bridge.peft.dora", "DoRA"),
}


def read_run_config(ckpt_iter: Path) -> dict[str, Any]:
    with open(ckpt_iter / "run_config.yaml", encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def build_peft(section: dict[str, Any], source: str) -> Any:
    """The LoRA / DoRA object a run_config.yaml ``peft:`` section describes."""
    import importlib

    target = section.get("_target_", "")
    if target not in PEFT_CLASSES:
        raise PrimusUserError(
            f"cannot export a {target or 'PEFT'} checkpoint",
            key="peft._target_",
            source=source,
            hint=f"supported: {', '.join(PEFT_CLASSES)}",
        )
    module, name = PEFT_CLASSES[target]
    cls = getattr(importlib.import_module(module), name)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    return cls(**{k: v for k, v in section.items() if k in fields})


def _is_hf_dir(path: Any) -> bool:
    return bool(path) and (Path(str(path)).expanduser() / "config.json").is_file()


def base_hf_dir(hf_source: str | os.PathLike | None, run_config: dict[str, Any], ckpt_iter: Path) -> Path:
    """``hf_source``, else the run's ``pretrained_checkpoint`` or ``hf_source_path`` if a HF dir."""
    if hf_source:
        return resolve_hf_dir(hf_source, key="--hf-source")
    ckpt_cfg = run_config.get("checkpoint") or {}
    for candidate in (ckpt_cfg.get("pretrained_checkpoint"), ckpt_cfg.get("hf_source_path")):
        if _is_hf_dir(candidate):
            return resolve_hf_dir(candidate, key="--hf-source")
    recorded = ckpt_cfg.get("pretrained_checkpoint") or ckpt_cfg.get("hf_source_path")
    raise PrimusUserError(
        f"the base model of adapter checkpoint {ckpt_iter} is not a HF directory here ({recorded})",
        key="--hf-source",
        hint="pass --hf-source DIR (the HF model the adapter was trained on)",
    )


def _megatron_base(run_config: dict[str, Any]) -> Path | None:
    """The run's ``pretrained_checkpoint`` when it is a Megatron checkpoint (its base weights)."""
    pretrained = (run_config.get("checkpoint") or {}).get("pretrained_checkpoint")
    if not pretrained or _is_hf_dir(pretrained):
        return None
    try:
        return resolve_checkpoint(pretrained, key="checkpoint.pretrained_checkpoint")
    except PrimusUserError:
        logger.warning("base checkpoint %s is gone: base weights from the HF directory", pretrained)
        return None


def _load_sharded(model: list, ckpt: Path, keep: Callable[[str], bool]) -> int:
    """Load the model tensors ``keep(name)`` selects from a torch_dist checkpoint; returns how many."""
    from megatron.bridge.training.checkpointing import _generate_model_state_dict
    from megatron.core import dist_checkpointing

    full = _generate_model_state_dict(model, {})
    wanted = {k: v for k, v in full["model"].items() if keep(k) and "_extra_state" not in k}
    loaded = dist_checkpointing.load({"model": wanted}, str(ckpt))["model"]
    # a wrapped layer's base tensors are stored under the layer's own name (no ``.to_wrap``)
    names = [n for n, _ in model[0].named_parameters()] + [n for n, _ in model[0].named_buffers()]
    local = {n.replace(".to_wrap.", "."): n for n in names}
    result = model[0].load_state_dict({local.get(k, k): v for k, v in loaded.items()}, strict=False)
    if result.unexpected_keys:
        raise RuntimeError(f"unexpected tensors from {ckpt}: {result.unexpected_keys[:4]}")
    return len(loaded)


def load_finetuned(bridge: Any, peft: Any, ckpt_iter: Path, env: Any, megatron_base: Path | None) -> list:
    """The Megatron model with its adapters, fp32: base weights (HF, or ``megatron_base``) + adapters."""
    if not env.has_te:
        from primus.backends.megatron_bridge.patches import peft_without_te

        peft_without_te.install()
    provider = bridge.to_megatron_provider(load_weights=True)
    apply_settings(provider, model_settings(env, fp32=True))
    provider.finalize()
    provider.register_pre_wrap_hook(lambda chunks: peft(chunks, training=False))
    model = provider.provide_distributed_model(wrap_with_ddp=False, use_cpu_initialization=env.on_cpu)
    if megatron_base is not None:
        n = _load_sharded(model, megatron_base, lambda k: not peft.adapter_key_filter(k))
        logger.info("base weights: %d tensors from %s", n, megatron_base)
    n = _load_sharded(model, ckpt_iter, peft.adapter_key_filter)
    if not n:
        raise PrimusUserError(f"{ckpt_iter} holds no adapter tensors", key="--ckpt")
    logger.info("adapters: %d tensors from %s", n, ckpt_iter)
    return model


def fold_dora(model: list) -> int:
    """Replace each DoRA layer's base weight by ``m * (W + s B A) / ||W + s B A||`` (rows) and
    zero its B, so a plain LoRA merge of it is DoRA's exact weight; returns the layers folded."""
    import torch
    from megatron.bridge.peft.dora_layers import DoRALinear

    folded = 0
    with torch.no_grad():
        for module in model[0].modules():
            if isinstance(module, DoRALinear):
                adapter = module.adapter
                weight = module.to_wrap.weight
                merged = weight + module.scaling * adapter.linear_out.weight @ adapter.linear_in.weight
                scale = adapter.get_weight_magnitude() / torch.linalg.norm(merged, dim=1)
                weight.copy_(merged * scale.unsqueeze(1))
                adapter.linear_out.weight.zero_()
                folded += 1
    return folded


def export_finetuned(
    ckpt_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    hf_source: str | os.PathLike | None,
    device: str,
    adapter_dir: str | os.PathLike | None = None,
    trust_remote_code: bool = False,
    check_output: bool = True,
    single_process: bool = False,
) -> ConversionResult:
    """Any checkpoint -> HF: the one door for exports (``convert export``, ``--convert_to_hf``).

    An adapter-only checkpoint becomes the merged HF model in ``out_dir`` (+ LoRA's HF PEFT
    adapter in ``adapter_dir``, default ``<out_dir>_adapter``); other checkpoints go to
    ``hf_conversion.export_hf``."""
    start = time.perf_counter()
    ckpt_iter = resolve_checkpoint(ckpt_dir)
    run_config = read_run_config(ckpt_iter)
    out = Path(out_dir).expanduser().resolve()
    if not run_config.get("peft"):
        from primus.backends.megatron_bridge.hf_conversion import export_hf

        return export_hf(
            ckpt_iter,
            out,
            hf_source=hf_source,
            device=device,
            trust_remote_code=trust_remote_code,
            check_output=check_output,
            single_process=single_process,
        )
    source = base_hf_dir(hf_source, run_config, ckpt_iter)
    arch = check_supported(source, key="--hf-source")
    peft = build_peft(run_config["peft"], str(ckpt_iter / "run_config.yaml"))
    from megatron.bridge.peft.dora import DoRA

    is_dora = isinstance(peft, DoRA)
    adapter = None if is_dora else Path(adapter_dir or f"{out}_adapter").expanduser().resolve()
    if check_output:
        _check_output_dir(out, "--out")
        if adapter is not None:
            _check_output_dir(adapter, "adapter directory")
    with megatron_session(device, single_process=single_process) as env:
        from megatron.bridge import AutoBridge

        bridge = AutoBridge.from_hf_pretrained(str(source), trust_remote_code=trust_remote_code)
        model = load_finetuned(bridge, peft, ckpt_iter, env, _megatron_base(run_config))
        if is_dora:
            logger.info(
                "DoRA: merged model only (%d layers folded); Megatron-Bridge cannot write a HF PEFT "
                "DoRA adapter (it drops the magnitude vectors)",
                fold_dora(model),
            )
        else:
            bridge.save_hf_adapter(
                model,
                str(adapter),
                peft_config=peft,
                base_model_name_or_path=str(source),
                show_progress=False,
            )
            logger.info("HF PEFT adapter (%s) at %s", type(peft).__name__, adapter)
        logger.info("exporting %s merged with its adapters to HF (%s) at %s", ckpt_iter, arch, out)
        bridge.save_hf_pretrained(
            model, str(out), show_progress=True, source_path=str(source), merge_adapter_weights=True
        )
    return ConversionResult(ckpt_iter, out, arch, time.perf_counter() - start, adapter=adapter)
