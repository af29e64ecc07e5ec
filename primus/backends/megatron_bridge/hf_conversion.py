"""HuggingFace <-> Megatron checkpoints through Megatron-Bridge's ``AutoBridge``.

Primus adds only what AutoBridge leaves to its caller: clear user errors for bad inputs, a
process-group session that also works on a CPU-only machine (gloo, world size 1, the
``setup`` patches: TE placeholder, CUDA calls redirected to the CPU, CPU RNG tracker) and
TE-free model settings where Transformer Engine is absent. The conversions themselves are
AutoBridge's: ``from_hf_pretrained`` + ``to_megatron_provider`` + ``save_megatron_model`` to
import, ``from_auto_config`` + ``load_megatron_model`` + ``save_hf_pretrained`` to export.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from primus.backends.megatron_bridge import bootstrap
from primus.backends.megatron_bridge.patches.conversion import has_tokenizer
from primus.core.environment import EnvFacts, detect
from primus.core.errors import PrimusUserError, closest

logger = logging.getLogger(__name__)

#: where Megatron-Core records the attention backend (see the conversion context below)
NVTE_ATTENTION_VARS = ("NVTE_FLASH_ATTN", "NVTE_FUSED_ATTN", "NVTE_UNFUSED_ATTN")
OFFLINE_HINT = (
    "this machine has no network: download the model elsewhere (`hf download ID --local-dir DIR`) "
    "and pass the directory, or set HF_HUB_OFFLINE=1 to use a copy in the local HF cache"
)


# -- inputs -----------------------------------------------------------------------------------
def _looks_like_hub_id(text: str) -> bool:
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "~")) and "\\" not in text


def resolve_hf_dir(path_or_id: str | os.PathLike, *, key: str = "--hf") -> Path:
    """A local HF model directory with a config.json, from a path or a cached hub id."""
    text = str(path_or_id)
    path = Path(text).expanduser()
    if not path.exists() and _looks_like_hub_id(text):
        if os.environ.get("HF_HUB_OFFLINE", "") not in ("1", "true", "True", "YES", "yes"):
            raise PrimusUserError(f"{text!r} is not a local directory", key=key, hint=OFFLINE_HINT)
        from huggingface_hub import snapshot_download

        try:
            path = Path(snapshot_download(text, local_files_only=True))
        except Exception as exc:  # LocalEntryNotFoundError, RepositoryNotFoundError...
            raise PrimusUserError(
                f"hub id {text!r} is not in the local HF cache ({type(exc).__name__})",
                key=key,
                hint="download it elsewhere and pass its directory",
            ) from None
    if not path.exists():
        raise PrimusUserError(f"HF model directory {text} does not exist", key=key, hint=OFFLINE_HINT)
    if not path.is_dir():
        raise PrimusUserError(f"{text} is not a directory", key=key, hint="pass a HF model directory")
    if not (path / "config.json").is_file():
        raise PrimusUserError(
            f"{text} has no config.json, so it is not a HuggingFace model directory",
            key=key,
            hint="point at the directory that holds config.json and *.safetensors",
        )
    return path.resolve()


def hf_architecture(hf_dir: Path, *, key: str = "--hf") -> str:
    """The first entry of ``architectures`` in config.json."""
    try:
        config = json.loads((hf_dir / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise PrimusUserError(f"cannot read {hf_dir / 'config.json'}: {exc}", key=key) from None
    archs = config.get("architectures") or []
    if not archs:
        raise PrimusUserError(
            f"{hf_dir / 'config.json'} names no architectures",
            key=key,
            hint='add e.g. "architectures": ["LlamaForCausalLM"]',
        )
    return archs[0]


def supported_architectures() -> list[str]:
    """The HF architectures the installed Megatron-Bridge can convert (imports Megatron-Bridge)."""
    from primus.backends.megatron_bridge.bootstrap import prepare_imports

    prepare_imports()
    from megatron.bridge import AutoBridge

    return AutoBridge.list_supported_models()


def check_supported(hf_dir: Path, *, key: str = "--hf") -> str:
    arch = hf_architecture(hf_dir, key=key)
    supported = supported_architectures()
    if arch not in supported:
        near = closest(arch, supported, n=4) or [a for a in supported if a[:4] == arch[:4]][:4]
        raise PrimusUserError(
            f"architecture {arch} is not supported by the installed Megatron-Bridge",
            key=key,
            source=str(hf_dir / "config.json"),
            hint=(f"closest supported: {', '.join(near)}; " if near else "")
            + "all of them: `primus convert list`",
        )
    return arch


def resolve_checkpoint(path: str | os.PathLike, *, key: str = "--ckpt") -> Path:
    """The iteration directory (the one with run_config.yaml) of a Megatron checkpoint."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise PrimusUserError(
            f"checkpoint directory {path} does not exist",
            key=key,
            hint="create one with `primus convert import` or `primus train`",
        )
    if (root / "run_config.yaml").is_file():
        return root.resolve()
    iters = sorted(
        (d for d in root.iterdir() if d.is_dir() and d.name.startswith("iter_") and d.name[5:].isdigit()),
        key=lambda d: int(d.name[5:]),
    )
    tracker = root / "latest_checkpointed_iteration.txt"
    if tracker.is_file() and tracker.read_text().strip().isdigit():
        wanted = root / f"iter_{int(tracker.read_text().strip()):07d}"
        iters = [wanted] if wanted.is_dir() else iters
    for candidate in reversed(iters):
        if (candidate / "run_config.yaml").is_file():
            return candidate.resolve()
    raise PrimusUserError(
        f"{path} holds no Megatron-Bridge checkpoint (no run_config.yaml, no iter_*/run_config.yaml)",
        key=key,
        hint="pass the checkpoint directory a `primus train` run or `primus convert import` wrote",
    )


def _check_output_dir(out: Path, key: str) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PrimusUserError(
            f"output {out} exists and is not empty", key=key, hint="choose a new directory or remove it"
        )


# -- runtime ----------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_parallel(device: str, tp: int, pp: int, world: int | None = None) -> EnvFacts:
    """The environment, once the parallel sizes make sense: torchrun supplies tp x pp ranks
    (NCCL on GPUs, gloo on a CPU)."""
    if tp < 1 or pp < 1:
        raise PrimusUserError(f"parallel sizes must be >= 1, got tp={tp} pp={pp}", key="--tp/--pp")
    world = int(os.environ.get("WORLD_SIZE", "1")) if world is None else world
    if world % (tp * pp):
        raise PrimusUserError(
            f"world size {world} is not divisible by tp*pp = {tp * pp}",
            key="--tp/--pp",
            hint=f"launch with `torchrun --nproc-per-node {tp * pp} -m primus convert ...`",
        )
    return detect(device)


@contextlib.contextmanager
def megatron_session(
    device: str = "auto", tp: int = 1, pp: int = 1, *, single_process: bool = False
) -> Iterator[EnvFacts]:
    """Process group + Megatron model-parallel state for one conversion; torn down after.

    On a CPU: gloo, world size 1 (tp = pp = 1). On GPUs: NCCL over the ranks torchrun started,
    or this process alone (``single_process``, e.g. rank 0 exporting after training).
    """
    world = 1 if single_process else int(os.environ.get("WORLD_SIZE", "1"))
    env = check_parallel(device, tp, pp, world)
    bootstrap.run_setup_patches(env)
    from primus.backends.megatron_bridge.patches import portable_checkpoints

    portable_checkpoints.install()  # a checkpoint trained with Primus's attention swap loads
    import torch
    import torch.distributed as dist
    from megatron.core import parallel_state, tensor_parallel

    rank = 0 if single_process else int(os.environ.get("RANK", "0"))
    # Megatron-Core records the attention backend in NVTE_* variables and asserts they agree
    # with the next model's; a conversion after training in the same process picks its own.
    saved_env = {name: os.environ.pop(name) for name in NVTE_ATTENTION_VARS if name in os.environ}
    created = not dist.is_initialized()
    if created:
        if world == 1:
            os.environ["MASTER_ADDR"] = os.environ.get("MASTER_ADDR", "127.0.0.1")
            os.environ["MASTER_PORT"] = str(_free_port())
        if not env.on_cpu:
            torch.cuda.set_device(0 if single_process else int(os.environ.get("LOCAL_RANK", "0")))
        # GPUs: NCCL for CUDA tensors, gloo for any CPU tensor a conversion step communicates
        dist.init_process_group("gloo" if env.on_cpu else "cpu:gloo,cuda:nccl", rank=rank, world_size=world)
    parallel_state.initialize_model_parallel(tp, pp)
    tensor_parallel.model_parallel_cuda_manual_seed(0, inference_rng_tracker=env.on_cpu)
    try:
        yield env
    finally:
        parallel_state.destroy_model_parallel()
        if created:
            dist.destroy_process_group()
        for name in NVTE_ATTENTION_VARS:
            os.environ.pop(name, None)
        os.environ.update(saved_env)


def model_settings(env: EnvFacts, *, fp32: bool = False) -> dict[str, Any]:
    """Provider fields this machine needs: TE-free spec and fusions without TE; fp32 on request."""
    import torch

    from primus.backends.megatron_bridge.patches.model_settings import te_free_settings

    settings: dict[str, Any] = {}
    if not env.has_te:
        settings.update(te_free_settings())
    if env.on_cpu:  # the CPU patch's model fields (cpu init, no compiled bias fusions, no bf16/fp16)
        from primus.backends.megatron_bridge.patches.model_settings import CPU_SETTINGS

        settings.update(
            {k.removeprefix("model."): v for k, v in CPU_SETTINGS.items() if k.startswith("model.")}
        )
    if fp32 or env.on_cpu:
        settings.update(bf16=False, fp16=False, params_dtype=torch.float32, pipeline_dtype=torch.float32)
    return settings


def apply_settings(provider: Any, settings: dict[str, Any]) -> None:
    if "transformer_layer_spec" in settings:  # the TE-free local spec replaces the provider's
        from primus.backends.megatron_bridge.patches.model_settings import check_layer_spec_without_te

        check_layer_spec_without_te(provider, "--hf")
    for key, value in settings.items():
        if hasattr(provider, key):
            setattr(provider, key, value)


def load_megatron(ckpt_iter: Path, env: EnvFacts, *, fp32: bool = False) -> list:
    """The Megatron model of a checkpoint (AutoBridge's loader, with this machine's settings)."""
    from megatron.bridge.training.model_load_save import load_megatron_model

    # mp_overrides is applied field by field onto the provider stored in the checkpoint
    overrides = model_settings(env, fp32=fp32)
    model = load_megatron_model(
        str(ckpt_iter), use_cpu_init=env.on_cpu, skip_temp_dist_context=True, mp_overrides=overrides
    )
    return model if isinstance(model, list) else [model]


def hf_model_provider(
    hf: str | os.PathLike, trust_remote_code: bool = False, *, key: str = "--hf", source: str | None = None
) -> tuple[Any, Path]:
    """AutoBridge's model provider for a HF directory (architecture only; weights load later)."""
    hf_dir = resolve_hf_dir(hf, key=key)
    check_supported(hf_dir, key=key)
    from megatron.bridge import AutoBridge

    bridge = AutoBridge.from_hf_pretrained(str(hf_dir), trust_remote_code=trust_remote_code)
    return bridge.to_megatron_provider(load_weights=False), hf_dir


# -- conversions ------------------------------------------------------------------------------
@dataclass
class ConversionResult:
    source: Path
    output: Path
    architecture: str
    seconds: float
    adapter: Path | None = None  # a LoRA checkpoint's HF PEFT adapter directory


def import_hf(
    hf: str | os.PathLike,
    out: str | os.PathLike,
    *,
    device: str = "auto",
    tp: int = 1,
    pp: int = 1,
    trust_remote_code: bool = False,
) -> ConversionResult:
    """HF directory -> Megatron torch_dist checkpoint (``out/iter_0000000``)."""
    import time

    start = time.perf_counter()
    hf_dir = resolve_hf_dir(hf)
    out = Path(out).expanduser().resolve()
    _check_output_dir(out, "--out")
    check_parallel(device, tp, pp)
    arch = check_supported(hf_dir)
    with megatron_session(device, tp, pp) as env:
        from megatron.bridge import AutoBridge

        bridge = AutoBridge.from_hf_pretrained(str(hf_dir), trust_remote_code=trust_remote_code)
        provider = bridge.to_megatron_provider(load_weights=True)
        provider.tensor_model_parallel_size, provider.pipeline_model_parallel_size = tp, pp
        apply_settings(provider, model_settings(env))
        provider.finalize()
        logger.info("converting %s (%s) to Megatron on %s", hf_dir, arch, env.device)
        # on GPUs the weights must live there: Bridge scatters tensor-parallel shards over NCCL
        model = provider.provide_distributed_model(wrap_with_ddp=False, use_cpu_initialization=env.on_cpu)
        bridge.save_megatron_model(
            model,
            str(out),
            hf_tokenizer_path=str(hf_dir) if has_tokenizer(hf_dir) else None,
            hf_tokenizer_kwargs={"trust_remote_code": True} if trust_remote_code else None,
            low_memory_save=True,
        )
    return ConversionResult(hf_dir, out, arch, time.perf_counter() - start)


def export_hf(
    ckpt: str | os.PathLike,
    out: str | os.PathLike,
    *,
    hf_source: str | os.PathLike | None = None,
    device: str = "auto",
    trust_remote_code: bool = False,
    check_output: bool = True,
    single_process: bool = False,
) -> ConversionResult:
    """Megatron checkpoint (whole model) -> HF directory (safetensors, config, tokenizer files of
    the source). Any checkpoint, adapters-only ones included: ``peft_export.export_finetuned``."""
    import time

    start = time.perf_counter()
    ckpt_iter = resolve_checkpoint(ckpt)
    out = Path(out).expanduser().resolve()
    if check_output:
        _check_output_dir(out, "--out")
    source = resolve_hf_dir(hf_source, key="--hf-source") if hf_source else _recorded_source(ckpt_iter)
    arch = check_supported(source, key="--hf-source")
    with megatron_session(device, single_process=single_process) as env:
        from megatron.bridge import AutoBridge

        # config synthesised from the checkpoint's model, conformed to the source's config.json
        bridge = AutoBridge.from_auto_config(str(ckpt_iter), str(source), trust_remote_code=trust_remote_code)
        model = load_megatron(ckpt_iter, env)
        logger.info("exporting %s to HF (%s) at %s", ckpt_iter, arch, out)
        bridge.save_hf_pretrained(model, str(out), show_progress=True, source_path=str(source))
    return ConversionResult(ckpt_iter, out, arch, time.perf_counter() - start)


def _recorded_source(ckpt_iter: Path) -> Path:
    """The HF model a checkpoint was imported from (Bridge records it as ``model.hf_model_id``)."""
    from primus.backends.megatron_bridge.bootstrap import prepare_imports

    prepare_imports()
    from megatron.bridge import AutoBridge

    recorded = AutoBridge.get_hf_model_id_from_checkpoint(str(ckpt_iter))
    if not recorded:
        raise PrimusUserError(
            f"checkpoint {ckpt_iter} does not record the HF model it came from",
            key="--hf-source",
            hint="pass --hf-source DIR (a HF directory of the same architecture: config + tokenizer)",
        )
    return resolve_hf_dir(recorded, key="--hf-source")
