"""A LoRA / DoRA fine-tuning checkpoint (adapters only) exported to HuggingFace, on a CPU.

The LoRA checkpoint is the session's LoRA run (``conftest.finetune_runs``: chat records, dim 16 /
alpha 32 on every linear layer, resumed once). A DoRA run of the same Bridge ``finetune()`` on a
tiny HF Llama trains in a subprocess (``peft_finetune_run.py``) while a second one exports the LoRA
checkpoint and measures logits; ``primus convert export`` then runs on the LoRA checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.backends.megatron_bridge import peft_finetune_run as run
from tests.conftest import REPO

pytestmark = pytest.mark.megatron

ATOL = 1e-4
HF_LORA_TARGETS = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PRIMUS_PATCHES"}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _start(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=cwd,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc: subprocess.Popen) -> str:
    output, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, output[-4000:]
    return output


@pytest.fixture(scope="module")
def lora(finetune_runs):
    """(the LoRA run's checkpoint directory, the HF model its adapters were trained on)."""
    return finetune_runs.lora.run_dir / "checkpoints", finetune_runs.sft.run_dir / "hf"


@pytest.fixture(scope="module")
def work(tmp_path_factory, lora) -> Path:
    work = tmp_path_factory.mktemp("peft")
    run.make_base(work)
    helper = "tests.backends.megatron_bridge.peft_finetune_run"
    ckpt, base = lora
    dora = _start("-m", helper, "finetune", str(work), "dora", cwd=REPO)
    measure = [str(ckpt), str(base), str(work / "export_lora" / "hf"), str(work / "measure_lora.json")]
    (work / "lora.log").write_text(_finish(_start("-m", helper, "measure", *measure, cwd=REPO)))
    cli = _start(
        "-m", "primus", "convert", "export", "--ckpt", str(ckpt), "--out", str(work / "cli" / "hf"), cwd=work
    )
    (work / "dora.log").write_text(_finish(dora))
    (work / "cli.log").write_text(_finish(cli))
    return work


@pytest.fixture(scope="module")
def measured(work) -> dict:
    return {mode: json.loads((work / f"measure_{mode}.json").read_text()) for mode in ("lora", "dora")}


def test_lora_merged_model_matches_the_megatron_model_with_its_adapters(measured):
    lora = measured["lora"]
    assert lora["merged_vs_megatron"] < ATOL
    assert lora["base_vs_megatron"] > 0.05  # the trained adapters change the output


def test_lora_hf_peft_adapter_matches_the_merged_model(measured):
    assert measured["lora"]["peft_vs_merged"] < ATOL


def test_lora_adapter_dir_holds_the_trained_targets(measured, work):
    from safetensors.torch import load_file

    adapter = Path(measured["lora"]["adapter_dir"])
    assert adapter == work / "export_lora" / "hf_adapter"  # sibling of the merged model's dir
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and not config["use_dora"]
    assert (config["r"], config["lora_alpha"]) == (16, 32)  # the LoRA run's peft.dim / peft.alpha
    assert set(config["target_modules"]) == HF_LORA_TARGETS
    tensors = load_file(str(adapter / "adapter_model.safetensors"))
    for layer in range(2):
        for module in ("self_attn.q_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj"):
            b = tensors[f"base_model.model.model.layers.{layer}.{module}.lora_B.weight"]
            assert b.shape[1] == 16 and b.abs().max() > 0  # trained away from its zero init


def test_dora_exports_the_exact_merged_model_and_no_adapter(measured, work):
    dora = measured["dora"]
    assert dora["adapter_dir"] is None and not (work / "export_dora" / "hf_adapter").exists()
    assert dora["merged_vs_megatron"] < ATOL  # the magnitude vectors are folded in
    assert dora["base_vs_megatron"] > 0.05
    assert "DoRA: merged model only" in (work / "dora.log").read_text()


def test_cli_export_writes_the_model_and_the_adapter(work):
    out = (work / "cli.log").read_text()
    assert f"HF PEFT adapter -> {work / 'cli' / 'hf_adapter'}" in out
    assert (work / "cli" / "hf" / "model.safetensors").is_file()
    assert (work / "cli" / "hf" / "tokenizer.json").is_file()
    assert (work / "cli" / "hf_adapter" / "adapter_model.safetensors").is_file()


def test_cli_export_without_the_base_model_says_pass_hf_source(lora, tmp_path):
    checkpoints, base = lora
    ckpt = tmp_path / "iter_0000200"
    shutil.copytree(checkpoints / "iter_0000200", ckpt)
    config = ckpt / "run_config.yaml"
    assert str(base) in config.read_text()
    config.write_text(config.read_text().replace(str(base), str(tmp_path / "gone")))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "primus",
            "convert",
            "export",
            "--ckpt",
            str(ckpt),
            "--out",
            str(tmp_path / "h"),
        ],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 2, out.stderr[-3000:]
    assert "is not a HF directory here" in out.stderr and "pass --hf-source DIR" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "h").exists()
