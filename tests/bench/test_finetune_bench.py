"""`primus bench` fine-tuning workloads: inputs, the HF peer, Primus's command, on a CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from primus.bench.finetune_data import FinetuneInputs
from primus.bench.sft_loop import IGNORE, flatten, pack
from primus.bench.systems import SYSTEMS, Case, Launch, Skip
from primus.bench.workloads import LLAMA32_1B, WORKLOADS, flops_per_token
from tests.conftest import run_cli


def test_packing_fills_bins_without_splitting_records():
    lengths = [900, 700, 1500, 300, 1200, 200, 1000, 640]
    bins = pack(lengths, 2048, seed=0)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= 2048 for b in bins)
    assert len(bins) == 4  # 6440 tokens: first-fit decreasing needs the minimum, ceil(6440 / 2048)
    with pytest.raises(ValueError, match="more than --seq 1000"):
        pack([1001], 1000, seed=0)


def test_flattened_row_restarts_positions_and_masks_each_records_first_label():
    records = [([5, 6, 7], [IGNORE, 6, 7]), ([8, 9], [8, 9])]
    row = flatten(records, "cpu")
    assert row["input_ids"].tolist() == [[5, 6, 7, 8, 9]]
    assert row["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    # label 8 would be predicted from record 1's last token: masked, so no record learns across a boundary
    assert row["labels"].tolist() == [[IGNORE, 6, 7, IGNORE, 9]]


def test_finetune_workloads_batch_packed_sequences_and_count_lora_flops():
    lora = WORKLOADS["llama32_1b_lora"]
    assert lora.finetune == "lora" and lora.batch(2048) == (1, 8) and not lora.runs_on_cpu
    assert WORKLOADS["llama32_1b_sft"].hf_config(2048)["vocab_size"] == LLAMA32_1B.vocab
    full, adapters = flops_per_token(LLAMA32_1B, 842), flops_per_token(LLAMA32_1B, 842, adapters_only=True)
    assert full - adapters == 2 * 1_235_746_816  # no weight gradients for the frozen matrices


def _case(tmp_path: Path, name: str = "tiny_lora") -> Case:
    inputs = FinetuneInputs(
        tmp_path / "hf", tmp_path / "data", {"validation_records": 16, "tokens_mean": 112.0}
    )
    return Case(WORKLOADS[name], 256, 6, "cpu", tmp_path / "out", None, inputs)


def test_primus_fine_tunes_the_same_records_packed_with_the_peers_adapter_shape(tmp_path):
    launch = SYSTEMS["primus"].launch(_case(tmp_path))
    assert isinstance(launch, Launch)
    command = " ".join(launch.command)
    for part in (
        f"--workload lora --hf_model_name_or_path {tmp_path / 'hf'} --data_path {tmp_path / 'data'}",
        "pack_sequences=true model.seq_length=256 train.micro_batch_size=1 train.global_batch_size=4",
        "peft.dim=16 peft.alpha=32",
        "optimizer.lr=0.001 optimizer.min_lr=0.0001",
    ):
        assert part in command, command
    sft = " ".join(SYSTEMS["primus"].launch(_case(tmp_path, "tiny_sft")).command)
    assert "--workload sft" in sft and "peft." not in sft
    peer = " ".join(SYSTEMS["hf_peft"].launch(_case(tmp_path)).command)
    assert "--seq 256 --bins-per-step 4 --micro-bins 1" in peer and "--lora-dim 16 --lora-alpha 32" in peer
    for name in ("hf_eager", "hf_compiled", "megatron_bridge"):
        assert isinstance(SYSTEMS[name].launch(_case(tmp_path)), Skip)


def test_data_is_refused_for_fine_tuning(tmp_path):
    proc = run_cli(
        "bench", "--workload", "tiny_lora", "--device", "cpu", "--data", "x", "--out", str(tmp_path)
    )
    assert proc.returncode != 0
    assert "fine-tuning workloads train on synthetic chat records" in proc.stdout + proc.stderr


def test_cpu_finetune_bench_trains_the_hf_peft_peer_on_the_built_records(tmp_path):
    out = tmp_path / "bench"
    proc = run_cli(
        "bench", "--workload", "tiny_lora", "--device", "cpu", "--steps", "4", "--warmup", "1",
        "--systems", "hf_peft", "--out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "bench.json").read_text())
    stats = report["finetune_inputs"]
    assert stats["records"] == 160 and 20 <= stats["tokens_min"] <= stats["tokens_max"] <= 256
    records = (out / "finetune_inputs/data/training.jsonl").read_text().splitlines()
    assert len(records) == 160 and json.loads(records[0])["messages"][1]["role"] == "assistant"
    (row,) = report["rows"]
    assert row["status"] == "ok" and row["tokens_per_s"] > 0 and row["dtype"] == "fp32"
    assert len(row["losses"]) == 4 and row["validation_loss"] > 0
    result = json.loads((out / "seq256/hf_peft/r0/result.json").read_text())
    # real tokens only: at most 4 packed sequences of 256 tokens per step, most of them filled
    assert all(600 < t <= 4 * 256 for t in result["step_tokens"]), result["step_tokens"]
    assert "real tokens/s" in proc.stdout and "| validation loss |" in proc.stdout


def test_pretraining_and_fine_tuning_share_one_launcher(tmp_path):
    pretrain = SYSTEMS["primus"].launch(Case(WORKLOADS["tiny"], 64, 6, "cpu", tmp_path))
    finetune = SYSTEMS["primus"].launch(_case(tmp_path))
    for launch in (pretrain, finetune):
        assert launch.command.count("torch.distributed.run") == 1
        assert launch.command[launch.command.index("primus.cli.train") + 1].startswith("--")
