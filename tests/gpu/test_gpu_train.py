"""GPU end to end (skipped without CUDA): the tiny Llama trains in bf16 on one GPU, no CPU patches."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO, run_cli

pytestmark = [pytest.mark.gpu, pytest.mark.megatron, pytest.mark.slow]


def test_tiny_llama_trains_on_gpu(tmp_path):
    run_dir = tmp_path / "gpu"
    out = run_cli(
        "train",
        "--config",
        str(REPO / "primus/configs/tiny_llama.yaml"),
        "--run_dir",
        str(run_dir),
        "--device",
        "cuda",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    assert "patch megatron_bridge.cpu_execution skipped" in (run_dir / "primus.log").read_text()
    config = (run_dir / "config.yaml").read_text()
    assert "mixed_precision: bf16_mixed" in config
    losses = [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 20 and losses[-1] < 0.75 * losses[0]
