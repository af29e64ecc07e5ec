"""Benchmark systems: how each one is launched for a workload, and where its result lands.

Every system runs as a subprocess and leaves a result (see ``results.py``). A system that
cannot run here says why (``Skip``) instead of failing the whole benchmark.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from primus.bench.finetune_data import FinetuneInputs
from primus.bench.results import packed_fill, result_from_run_dir
from primus.bench.workloads import REPO, Workload
from primus.core.errors import PrimusUserError, Problem, did_you_mean


@dataclass(frozen=True)
class Launch:
    """What to run, and how to read its result afterwards."""

    command: list[str]
    env: dict[str, str]
    read_result: Callable[[], dict[str, Any]]


@dataclass(frozen=True)
class Skip:
    reason: str


@dataclass(frozen=True)
class Case:
    """One system run: a workload at one sequence length on one device."""

    workload: Workload
    seq: int
    steps: int
    device: str  # "cuda" or "cpu"
    out_dir: Path
    data: Path | None = None  # an indexed-dataset prefix; None: each system's synthetic tokens
    #: fine-tuning workloads: the model directory and chat records every system starts from
    inputs: FinetuneInputs | None = None

    @property
    def batch(self) -> tuple[int, int]:
        return self.workload.batch(self.seq)


@dataclass(frozen=True)
class System:
    name: str
    description: str
    launch: Callable[[Case], Launch | Skip]


LAUNCHER = [
    sys.executable,
    "-m",
    "torch.distributed.run",
    "--standalone",  # a free rendezvous port: never collides with another job's 29500
    "--nproc_per_node",
    "1",
    "-m",
    "primus.cli.train",
]


def _perf_env(perf_patches: bool) -> dict[str, str]:
    return {} if perf_patches else {"PRIMUS_PATCHES": ",".join(f"-{i}" for i in perf_patch_ids())}


def _primus_finetune(case: Case, perf_patches: bool) -> Launch:
    """`primus train --workload lora|sft` on the records, packed; validation after training only."""
    w, inputs = case.workload, case.inputs
    assert inputs is not None and w.finetune is not None  # the runner builds them for fine-tuning
    mbs, gbs = case.batch
    run_dir = case.out_dir / "run"
    validation_tokens = inputs.stats["validation_records"] * inputs.stats["tokens_mean"]
    command = [
        *LAUNCHER,
        "--workload",
        w.finetune,
        "--hf_model_name_or_path",
        str(inputs.model_dir),
        "--data_path",
        str(inputs.data_dir),
        "--run_dir",
        str(run_dir),
        "--device",
        case.device,
        "pack_sequences=true",
        f"model.seq_length={case.seq}",
        f"train.micro_batch_size={mbs}",
        f"train.global_batch_size={gbs}",
        f"train.train_iters={case.steps}",
        "validation.eval_interval=1000000",
        f"validation.eval_iters={max(1, int(validation_tokens // w.tokens_per_step))}",
        f"optimizer.lr={w.lr}",
        f"optimizer.min_lr={w.min_lr}",
        f"scheduler.lr_warmup_iters={min(5, case.steps - 1)}",
        f"scheduler.lr_decay_iters={case.steps}",
        "checkpoint.save=null",
        "logger.log_interval=5",
        *([f"peft.dim={w.lora_dim}", f"peft.alpha={w.lora_alpha}"] if w.finetune == "lora" else []),
        *w.extra_overrides,
    ]

    def read() -> dict[str, Any]:
        result = result_from_run_dir(run_dir)
        real = packed_fill(run_dir, case.seq) * gbs * case.seq
        return {**result, "step_tokens": [real] * len(result["step_seconds"])}

    return Launch(command, _perf_env(perf_patches), read)


def _primus(case: Case, perf_patches: bool) -> Launch | Skip:
    w = case.workload
    if w.finetune:
        return _primus_finetune(case, perf_patches)
    mbs, gbs = case.batch
    run_dir = case.out_dir / "run"
    source = ["--recipe", w.recipe] if w.recipe else ["--config", str(REPO / w.primus_config)]
    command = [
        *LAUNCHER,
        *source,
        "--run_dir",
        str(run_dir),
        "--device",
        case.device,
        f"dataset.seq_length={case.seq}",
        f"train.micro_batch_size={mbs}",
        f"train.global_batch_size={gbs}",
        f"train.train_iters={case.steps}",
        "validation.eval_interval=1000000",
        "validation.eval_iters=0",
        f"scheduler.lr_warmup_iters={min(5, case.steps - 1)}",
        f"scheduler.lr_decay_iters={case.steps}",
        "checkpoint.save=null",
        "logger.log_interval=5",
        *w.extra_overrides,
    ]
    if not w.recipe:
        command.append(f"model.seq_length={case.seq}")
    if case.data:  # the null tokenizer adds an end-of-document id: vocab - 1 ids + 1 = the shape's
        command += ["--data_path", str(case.data), "tokenizer.tokenizer_type=NullTokenizer"]
        command.append(f"tokenizer.vocab_size={w.shape.vocab - 1}")
    return Launch(command, _perf_env(perf_patches), lambda: result_from_run_dir(run_dir))


def perf_patch_ids() -> list[str]:
    import primus.backends.megatron_bridge.patches  # noqa: F401  (registers them; no Megatron import)
    from primus.backends.megatron_bridge import NAME
    from primus.core.patches import PATCHES

    return [p.id for p in PATCHES.list(NAME) if p.kind == "perf"]


def _bridge_direct(case: Case) -> Launch | Skip:
    if case.workload.finetune:
        return Skip("pretraining only (use primus_no_perf for Bridge's finetune() without the fast path)")
    if case.device != "cuda":
        return Skip(
            "Megatron-Bridge alone cannot train without CUDA (Primus's CPU patches are what make that work)"
        )
    if not case.workload.recipe:
        return Skip(f"workload {case.workload.name!r} has no Megatron-Bridge recipe")
    mbs, gbs = case.batch
    run_dir = case.out_dir / "run"
    command = [
        sys.executable,
        "-m",
        "primus.backends.megatron_bridge.bench_direct",
        "--recipe",
        case.workload.recipe,
        "--seq",
        str(case.seq),
        "--mbs",
        str(mbs),
        "--gbs",
        str(gbs),
        "--iters",
        str(case.steps),
        "--run-dir",
        str(run_dir),
    ]
    if case.data:
        command += ["--data", str(case.data), "--vocab", str(case.workload.shape.vocab)]
    return Launch(command, {}, lambda: result_from_run_dir(run_dir))


def _hf(case: Case, compiled: bool) -> Launch | Skip:
    if case.workload.finetune:
        return Skip("pretraining only (the fine-tuning peers are hf_peft and trl)")
    if compiled and case.device != "cuda":
        return Skip(
            "torch.compile is benchmarked on GPUs only (on a CPU it only adds minutes of compilation)"
        )
    mbs, gbs = case.batch
    case.out_dir.mkdir(parents=True, exist_ok=True)
    config = case.out_dir / "hf_config.json"
    config.write_text(json.dumps(case.workload.hf_config(case.seq), indent=1))
    result = case.out_dir / "result.json"
    command = [
        sys.executable,
        "-m",
        "primus.bench.hf_loop",
        "--config",
        str(config),
        "--seq",
        str(case.seq),
        "--mbs",
        str(mbs),
        "--ga",
        str(gbs // mbs),
        "--steps",
        str(case.steps),
        "--lr",
        str(case.workload.lr),
        "--device",
        case.device,
        # on a CPU as Primus trains there: fp32, no gradient clipping (its cpu_training_config patch)
        *(["--dtype", "bf16"] if case.device == "cuda" else ["--dtype", "fp32", "--clip-grad", "0"]),
        "--out",
        str(result),
        *(["--compile"] if compiled else []),
        *(["--data", str(case.data)] if case.data else []),
    ]
    return Launch(command, {}, lambda: json.loads(result.read_text()))


def _finetune_peer(case: Case, module: str) -> Launch | Skip:
    """The HF fine-tuning peers: same model directory, records, bins of ``seq`` tokens, schedule."""
    w, inputs = case.workload, case.inputs
    if not w.finetune or inputs is None:
        return Skip("fine-tuning workloads only (e.g. --workload llama32_1b_lora)")
    if module == "primus.bench.trl_loop":
        import importlib.util

        if importlib.util.find_spec("trl") is None:
            return Skip("the trl package is not installed here")
    _, gbs = case.batch
    result = case.out_dir / "result.json"
    command = [
        sys.executable,
        "-m",
        module,
        "--model",
        str(inputs.model_dir),
        "--data",
        str(inputs.data_dir),
        "--finetune",
        w.finetune,
        "--seq",
        str(case.seq),
        "--bins-per-step",
        str(gbs),
        "--micro-bins",
        str(w.peer_micro_bins),
        "--steps",
        str(case.steps),
        "--lr",
        str(w.lr),
        "--min-lr",
        str(w.min_lr),
        "--warmup-lr",
        str(min(5, case.steps - 1)),
        "--lora-dim",
        str(w.lora_dim),
        "--lora-alpha",
        str(w.lora_alpha),
        "--device",
        case.device,
        # on a CPU as Primus trains there: no gradient clipping (its cpu_training_config patch)
        *(["--clip-grad", "0"] if case.device == "cpu" else []),
        "--out",
        str(result),
    ]
    return Launch(command, {}, lambda: json.loads(result.read_text()))


SYSTEMS: dict[str, System] = {}


def register(system: System) -> None:
    if system.name in SYSTEMS:
        raise ValueError(f"benchmark system {system.name!r} is already registered")
    SYSTEMS[system.name] = system


for _system in (
    System("primus", "Primus, Megatron-Bridge with the TE-free fast path", lambda c: _primus(c, True)),
    System("primus_no_perf", "Primus with its performance patches off", lambda c: _primus(c, False)),
    System(
        "megatron_bridge", "Megatron-Bridge pretrain() directly, same recipe, no TE (vanilla)", _bridge_direct
    ),
    System(
        "hf_eager",
        "HF LlamaForCausalLM, SDPA, eager; bf16 autocast + fused AdamW on CUDA, fp32 on a CPU",
        lambda c: _hf(c, False),
    ),
    System("hf_compiled", "the same with torch.compile", lambda c: _hf(c, True)),
    System(
        "hf_peft",
        "fine-tuning: HF transformers (+ peft LoRA), padding-free packed records, SDPA, bf16 autocast, fused AdamW",
        lambda c: _finetune_peer(c, "primus.bench.sft_loop"),
    ),
    System(
        "trl",
        "fine-tuning: TRL SFTTrainer, packing bfd (padding-free), assistant-only loss, bf16, fused AdamW",
        lambda c: _finetune_peer(c, "primus.bench.trl_loop"),
    ),
):
    register(_system)


def get_systems(names: list[str]) -> list[System]:
    problems = [
        Problem(f"unknown system {n!r}", key="--systems", source="cli", hint=did_you_mean(n, SYSTEMS))
        for n in names
        if n not in SYSTEMS
    ]
    if problems:
        raise PrimusUserError(problems)
    return [SYSTEMS[n] for n in names]
