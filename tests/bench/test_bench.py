"""`primus bench`: the harness itself, in its CPU mode (figures come only from GPUs)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from primus.bench.runner import _run_one, table
from primus.bench.systems import SYSTEMS, Launch
from primus.bench.workloads import LLAMA32_1B, WORKLOADS, flops_per_token
from tests.conftest import run_cli


def test_flop_formula_for_llama32_1b():
    # 16 layers x (QKV 2048x(2048+2x512) + out 2048x2048 + MLP 3x2048x8192) + output layer 2048x128256
    matmul_params = 16 * (2048 * 3072 + 2048 * 2048 + 3 * 2048 * 8192) + 2048 * 128256
    assert matmul_params == 1_235_746_816  # Llama-3.2-1B's parameter count (tied embeddings)
    assert flops_per_token(LLAMA32_1B, 2048) == 6 * matmul_params + 12 * 16 * 2048 * 2048


def test_llama32_1b_shape_matches_the_shipped_hf_config():
    cfg = WORKLOADS["llama32_1b"].hf_config(4096)
    s = LLAMA32_1B
    assert (cfg["num_hidden_layers"], cfg["hidden_size"], cfg["intermediate_size"]) == (
        s.layers,
        s.hidden,
        s.ffn,
    )
    assert (cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["vocab_size"]) == (
        s.heads,
        s.kv_heads,
        s.vocab,
    )
    assert cfg["tie_word_embeddings"] is s.tied_embeddings and cfg["max_position_embeddings"] >= 4096


def test_a_failing_system_is_reported_not_raised(tmp_path):
    launch = Launch([sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], {}, lambda: {})
    result, error = _run_one(launch, tmp_path / "log.txt", timeout_s=60)
    assert result is None and error.startswith("exit code 3") and str(tmp_path / "log.txt") in error
    assert "boom" in (tmp_path / "log.txt").read_text()
    slow = Launch([sys.executable, "-c", "import time; time.sleep(30)"], {}, lambda: {})
    result, error = _run_one(slow, tmp_path / "slow.txt", timeout_s=1)
    assert result is None and error.startswith("timed out after 1 s")


@pytest.mark.megatron
def test_cpu_bench_runs_primus_and_hf_side_by_side(tmp_path):
    out = tmp_path / "bench"
    systems = ["primus", "hf_eager", "megatron_bridge", "hf_compiled"]
    proc = run_cli(
        "bench", "--workload", "tiny", "--device", "cpu", "--steps", "6", "--warmup", "2",
        "--systems", *systems, "--out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "bench.json").read_text())
    rows = {r["system"]: r for r in report["rows"]}
    assert list(rows) == systems and report["matmul"]["tflops"] > 0
    # on a CPU every system reads one synthetic dataset, in fp32: the columns compare like with like
    synthetic = out / "synthetic" / "tokens"
    assert report["data"].startswith("synthetic counting sequences") and str(synthetic) in report["data"]
    for name, flags in (("primus", ["--data_path"]), ("hf_eager", ["--data", "--dtype fp32 --clip-grad 0"])):
        r = rows[name]
        assert r["status"] == "ok" and r["tokens_per_s"] > 0 and 0 < r["mfu"] < 1
        assert r["peak_memory_gib"] > 0 and r["memory_kind"] == "cpu_max_rss" and r["dtype"] == "fp32"
        assert len(r["losses"]) == 6 and all(x > 0 for x in r["losses"])
        # both start near ln(256) and learn the counting sequences (random tokens would stay at ~5.55)
        assert 5.0 < r["loss_first"] < 6.0 and r["loss_last"] < r["loss_first"] - 0.2, r["losses"]
        command = (out / f"seq64/{name}/r0/log.txt").read_text().splitlines()[0]
        assert f"{flags[0]} {synthetic}" in command and all(f in command for f in flags[1:]), command
    assert rows["primus"]["ratio_to_first"] == 1.0 and rows["hf_eager"]["ratio_reference"] == "primus"
    assert rows["megatron_bridge"]["status"].startswith(
        "skipped: Megatron-Bridge alone cannot train without CUDA"
    )
    assert rows["hf_compiled"]["status"].startswith("skipped: torch.compile is benchmarked on GPUs only")
    assert "workload tiny on CPU (one process, no GPU)" in proc.stdout
    assert "| system | seq | dtype | tokens/s | model TFLOP/s | of matmul |" in proc.stdout
    assert "/GPU" not in proc.stdout and "MFU" not in proc.stdout
    assert (out / "bench.md").read_text().strip() in proc.stdout
    assert (out / "seq64/primus/r0/log.txt").is_file()


def test_table_names_the_device_and_per_gpu_columns_only_on_gpus():
    row = {"system": "primus", "seq": 64, "status": "ok", "dtype": "bf16", "tokens_per_s": 1000.0}
    row.update(model_tflops_per_gpu=400.0, mfu=0.5, peak_memory_gib=1.0, ratio_to_first=1.0)
    report = {"workload": {"name": "tiny"}, "steps": 6, "warmup": 2, "repeats": 1, "data": "d", "rows": [row]}
    gpu = table(
        {
            **report,
            "device": "cuda",
            "matmul": {"device": "H200", "tflops": 788.4, "dtype": "bfloat16", "n": 8192},
        }
    )
    assert "on H200; MFU against 788.4 TFLOP/s (bfloat16 8192^3" in gpu
    assert (
        "| tokens/s | model TFLOP/s/GPU | MFU |" in gpu
        and "| primus | 64 | bf16 | 1,000 | 400 | 50.0% |" in gpu
    )
    cpu = table(
        {
            **report,
            "device": "cpu",
            "matmul": {"device": "cpu", "tflops": 0.06, "dtype": "float32", "n": 1024},
        }
    )
    assert "on CPU (one process, no GPU)" in cpu and "/GPU" not in cpu and "MFU" not in cpu
    assert "| tokens/s | model TFLOP/s | of matmul |" in cpu


@pytest.mark.parametrize(
    "args,expected",
    [
        (
            ["--workload", "llama3_1b"],
            "--workload (cli): unknown workload 'llama3_1b'; did you mean 'llama32_1b'",
        ),
        (["--systems", "primus", "hf_eagr", "torchtitan"], "2 problems:"),
        (
            ["--workload", "tiny", "--seq", "100"],
            "--seq (cli): workload 'tiny' needs a sequence length dividing 256",
        ),
        (["--steps", "5", "--warmup", "5"], "--steps (cli): must be at least 6, got 5"),
        (["--device", "cuda"], "--device (cli): CUDA is not available here; use --device cpu"),
        (["--device", "cpu"], "--workload (cli): workload 'llama32_1b' needs a GPU"),
    ],
)
def test_bad_arguments_are_one_line_user_errors(tmp_path, args, expected):
    if "cuda" in args:
        pytest.importorskip("torch")
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    proc = run_cli("bench", *args, "--out", str(tmp_path))
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "bench.json").exists()


def test_unknown_systems_are_all_named_with_suggestions(tmp_path):
    proc = run_cli("bench", "--systems", "primus", "hf_eagr", "torchtitan", "--out", str(tmp_path))
    assert "unknown system 'hf_eagr'; did you mean 'hf_eager'?" in proc.stderr
    assert "unknown system 'torchtitan'" in proc.stderr


def test_list_names_every_workload_and_system():
    proc = run_cli("bench", "--list")
    assert proc.returncode == 0
    for name in [*WORKLOADS, *SYSTEMS]:
        assert name in proc.stdout


def _byte_dataset(prefix: Path, text: bytes, extra_id: int | None = None) -> Path:
    """A Megatron indexed dataset (written by Megatron-Core's own builder) of a text's byte values."""
    import numpy as np
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    builder = IndexedDatasetBuilder(str(prefix) + ".bin", dtype=np.uint16)
    for line in text.splitlines():
        ids = [b for b in line if b < 250] + ([extra_id] if extra_id is not None else [])
        if ids:
            builder.add_document(torch.tensor(ids, dtype=torch.int64), [len(ids)])
    builder.finalize(str(prefix) + ".idx")
    return prefix


@pytest.mark.megatron
@pytest.mark.nightly  # long; `make test-nightly`
def test_cpu_bench_on_real_text_gives_comparable_losses(tmp_path):
    from tests.conftest import REPO

    text = b"\n".join(p.read_bytes() for p in sorted((REPO / "docs").glob("*.md")))
    prefix = _byte_dataset(tmp_path / "docs_bytes", text)
    out = tmp_path / "bench"
    proc = run_cli(
        "bench", "--workload", "tiny", "--device", "cpu", "--steps", "5", "--warmup", "1",
        "--systems", "primus", "hf_eager", "--data", str(prefix), "--out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "bench.json").read_text())
    assert report["data"] == str(prefix)
    rows = {r["system"]: r for r in report["rows"]}
    for name, flag in (("primus", "--data_path"), ("hf_eager", "--data")):
        r = rows[name]
        assert r["status"] == "ok" and len(r["losses"]) == 5, r
        # both start near ln(256) on the same text and learn it (random tokens would stay at ~5.55)
        assert 5.0 < r["loss_first"] < 6.0 and r["loss_last"] < r["loss_first"] - 0.3, r["losses"]
        command = (out / f"seq64/{name}/r0/log.txt").read_text().splitlines()[0]
        assert f"{flag} {prefix}" in command, command


@pytest.mark.megatron
def test_data_errors_are_one_line(tmp_path):
    missing = run_cli(
        "bench",
        "--workload",
        "tiny",
        "--device",
        "cpu",
        "--data",
        str(tmp_path / "nope"),
        "--out",
        str(tmp_path / "o"),
    )
    assert (
        missing.returncode == 2
        and "--data (cli): " in missing.stderr
        and "no .bin or .idx file" in missing.stderr
    )
    prefix = _byte_dataset(tmp_path / "big_ids", b"hello world\nmore text", extra_id=300)
    too_big = run_cli(
        "bench", "--workload", "tiny", "--device", "cpu", "--data", str(prefix), "--out", str(tmp_path / "o")
    )
    assert (
        too_big.returncode == 2
        and "has token id 300, beyond the workload's vocabulary (256" in too_big.stderr
    )
    assert "Traceback" not in missing.stderr + too_big.stderr and not (tmp_path / "o").exists()
