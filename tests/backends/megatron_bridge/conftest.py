"""Runs shared by several test modules, each made once per session: the tiny pretraining run
(single process, the baseline the resume and multi-node runs are compared with) and the
fine-tuning runs of the fine-tuning and export tests.

A tiny random HF Llama is first fully fine-tuned (SFT) on 50 made-up facts in chat form, packed,
so it learns language of that kind and those facts; that model is then the base for a LoRA run on
50 other facts, one record per sequence. (Prompt/completion records: test_finetune_config.py,
test_peft_export.py.) Both run through the real CLI on a CPU, with ``--convert_to_hf``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli
from tests.finetune_support import (
    Fact,
    make_facts,
    make_tiny_hf_model,
    write_chat,
)

TINY = REPO / "primus" / "configs" / "tiny_llama.yaml"


def read_losses(run_dir: Path) -> dict[int, float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return {rec["iteration"]: rec["loss"] for rec in map(json.loads, lines)}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One uninterrupted single-process 20-iteration run of tiny_llama.yaml: (run_dir, output)."""
    run_dir = tmp_path_factory.mktemp("tiny") / "run"
    out = run_cli("train", "--config", str(TINY), "--run_dir", str(run_dir), cwd=run_dir.parent)
    assert out.returncode == 0, out.stderr[-3000:]
    return run_dir, out


#: shared by every fine-tuning run here: a CPU minute each
COMMON = [
    "model.seq_length=64",
    "scheduler.lr_warmup_iters=10",
    "optimizer.min_lr=3e-4",
    "logger.log_interval=50",
]


@dataclass(frozen=True)
class FinetuneRun:
    run_dir: Path
    facts: list[Fact]
    stdout: str
    stderr: str

    @property
    def summary(self) -> dict:
        return json.loads((self.run_dir / "summary.json").read_text())

    def metrics(self) -> list[dict]:
        lines = (self.run_dir / "metrics.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]


@dataclass(frozen=True)
class FinetuneRuns:
    base_hf: Path  #: the random tiny model both start from (SFT) or build on (LoRA via SFT)
    sft: FinetuneRun  #: chat, packed, validation file given
    sft_data: Path  #: its records (a directory: training.jsonl, validation.jsonl)
    lora: FinetuneRun  #: chat, unpacked, validation held out, from the SFT export;
    #: stopped at iteration 100 and resumed to 200 (``stdout``/``stderr``: the resumed part)
    lora_first_stderr: str


def SAMPLED(facts: list[Fact]) -> list[str]:  # noqa: N802  (a constant's rule, a function's form)
    """The questions the SFT run generates answers to while it trains (``logger.sample_prompts``)."""
    return [f.question for f in facts[:3]]


#: the SFT run's data layout (an imported-checkpoint run repeats it)
SFT_SHAPE = ["pack_sequences=true", "train.global_batch_size=4", "optimizer.lr=3e-3"]


def _train(*args: str) -> tuple[str, str]:
    out = run_cli("train", *args, *COMMON, timeout=900)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return out.stdout, out.stderr


@dataclass(frozen=True)
class FinetuneBase:
    hf: Path  #: a random tiny HF Llama whose BPE tokenizer was trained on both sets of facts
    sft_facts: list[Fact]
    lora_facts: list[Fact]


@pytest.fixture(scope="session")
def finetune_base(tmp_path_factory) -> FinetuneBase:
    work = tmp_path_factory.mktemp("finetune_base")
    sft_facts, lora_facts = make_facts(50, seed=99), make_facts(50, seed=7)
    return FinetuneBase(make_tiny_hf_model(work / "base_hf", sft_facts + lora_facts), sft_facts, lora_facts)


@pytest.fixture(scope="session")
def imported_base(finetune_base, tmp_path_factory):
    """``primus convert import`` of the base model: (Megatron checkpoint dir, the CompletedProcess).
    Shared by the import / verify CLI test and the SFT-from-an-imported-checkpoint test."""
    ckpt = tmp_path_factory.mktemp("imported") / "ckpt"
    out = run_cli("convert", "import", "--hf", str(finetune_base.hf), "--out", str(ckpt), cwd=ckpt.parent)
    assert out.returncode == 0, out.stderr[-3000:]
    return ckpt, out


@pytest.fixture(scope="session")
def finetune_runs(tmp_path_factory, finetune_base) -> FinetuneRuns:
    work = tmp_path_factory.mktemp("finetune")
    sft_facts, lora_facts, base = finetune_base.sft_facts, finetune_base.lora_facts, finetune_base.hf
    sft_data = work / "sft_data"
    write_chat(sft_facts, sft_data / "training.jsonl")
    # validation records the model also trains on: their loss must fall well below the start
    write_chat(sft_facts[:10], sft_data / "validation.jsonl")
    sft_dir = work / "sft"
    out = _train(
        "--workload", "sft", "--hf_model_name_or_path", str(base), "--data_path", str(sft_data),
        "--run_dir", str(sft_dir), "--convert_to_hf", "train.train_iters=300", *SFT_SHAPE,
        "validation.eval_interval=100", "validation.eval_iters=1", "checkpoint.save_interval=300",
        f"logger.sample_prompts={json.dumps(SAMPLED(sft_facts))}", "logger.sample_interval=150",
    )  # fmt: skip
    sft = FinetuneRun(sft_dir, sft_facts, *out)
    lora_data = write_chat(lora_facts, work / "lora_records.jsonl")
    lora_dir = work / "lora"
    lora = [
        "--workload", "lora", "--hf_model_name_or_path", str(sft_dir / "hf"), "--data_path", str(lora_data),
        "--run_dir", str(lora_dir), "optimizer.lr=5e-3", "peft.dim=16", "peft.alpha=32",
        "validation.eval_interval=100", "validation.eval_iters=1", "checkpoint.save_interval=100",
        "train.train_iters=200", "train.global_batch_size=8", "train.micro_batch_size=8",
    ]  # fmt: skip
    first = _train(*lora, "train.exit_interval=100")  # stops at 100 with a checkpoint: resumed below
    out = _train(*lora, "--resume", "--convert_to_hf")
    return FinetuneRuns(base, sft, sft_data, FinetuneRun(lora_dir, lora_facts, *out), first[1])
