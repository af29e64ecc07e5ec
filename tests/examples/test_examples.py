"""Shipped example configs dry-run, and every scenario of examples/run_megatron_bridge.sh runs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, run_cli

pytestmark = [pytest.mark.megatron, pytest.mark.slow]

CONFIGS = REPO / "examples" / "configs" / "megatron_bridge"
SCRIPT = REPO / "examples" / "run_megatron_bridge.sh"
#: covered by the script scenarios below: these train, except the HF one (dry run in `tiny_hf`)
COVERED_BY_SCENARIOS = {
    "llama_7b_pretrain_tiny.yaml",
    "llama3_8b_recipe_tiny.yaml",
    "hf_conversion_example_tiny.yaml",
    "llama3_8b_lora_tiny.yaml",
}
#: fine-tuning configs: dry-run with the script's tiny models (chat templates) and chat records
FINETUNE_MODELS = {
    "llama3_8b_lora.yaml": "tiny_hf_llama",
    "qwen3_sft_chat.yaml": "tiny_hf_qwen3",
    "qwen3_sft_chat_tiny.yaml": "tiny_hf_qwen3",
}


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory):
    """A random tiny HF Llama (+ tokenizer), built the way the script builds it."""
    runs = tmp_path_factory.mktemp("runs")
    out = _script("hf", "--tiny", "--dry-run", runs=runs)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return runs / "tiny_hf_llama"


@pytest.fixture(scope="module")
def tiny_finetune(tmp_path_factory):
    """Made-up chat records + tiny HF Llama / Qwen3 with chat templates, from `sft --tiny --dry-run`."""
    runs = tmp_path_factory.mktemp("runs")
    out = _script("sft", "--tiny", "--dry-run", runs=runs)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "dry run: configuration is valid" in out.stdout + out.stderr
    return runs / "tiny_finetune"


def _script(*args: str, runs, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PRIMUS_PATCHES", "PRIMUS_HF_MODEL")}
    env.update({"RUNS_DIR": str(runs), "PYTHON": sys.executable, **(extra_env or {})})
    return subprocess.run(
        ["bash", str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )


def test_every_example_is_covered():
    names = {p.name for p in CONFIGS.glob("*.yaml")}
    assert names == {
        "llama_7b_pretrain.yaml",
        "llama_7b_pretrain_tiny.yaml",
        "llama3_8b_recipe.yaml",
        "llama3_8b_recipe_tiny.yaml",
        "hf_conversion_example.yaml",
        "hf_conversion_example_tiny.yaml",
        "llama3_8b_lora.yaml",
        "llama3_8b_lora_tiny.yaml",
        "qwen3_sft_chat.yaml",
        "qwen3_sft_chat_tiny.yaml",
    }


@pytest.mark.parametrize(
    "name", sorted(p.name for p in CONFIGS.glob("*.yaml") if p.name not in COVERED_BY_SCENARIOS)
)
def test_example_config_dry_runs(name, tmp_path, request):
    if name in FINETUNE_MODELS:
        tiny = request.getfixturevalue("tiny_finetune")
        args, model = ["--data_path", str(tiny / "chat")], tiny / FINETUNE_MODELS[name]
    else:
        args, model = [], request.getfixturevalue("tiny_hf")
    out = run_cli(
        "train", "--config", str(CONFIGS / name), "--run_dir", str(tmp_path / "run"), "--dry-run", *args,
        env={"PRIMUS_HF_MODEL": str(model)},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("# primus train --dry-run") and not (tmp_path / "run").exists()
    assert "  model        " in out.stdout and "  training     " in out.stdout  # the summary block


@pytest.mark.parametrize(
    ("scenario", "args", "expect"),
    [
        ("1", ["--tiny"], "summary:"),
        ("recipe", ["--tiny"], "summary:"),
        ("3", ["--tiny"], "summary:"),
        # two CPU processes train data-parallel in test_train_cpu.py; here the config for them
        ("4", ["--tiny", "--dry-run"], "CPU processes data-parallel"),
        ("5", ["--tiny"], "FP8 skipped: it needs Transformer Engine"),
        ("6", ["--tiny"], "exported LlamaForCausalLM"),
        # the same LoRA + export + peft load trains in test_finetune_functional.py: here its config
        ("finetune", ["--tiny", "--dry-run"], "lora: adapters of dim 8"),
    ],
)
def test_script_scenario(scenario, args, expect, tmp_path):
    out = _script(scenario, *args, runs=tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert expect in out.stdout + out.stderr
    if scenario in ("1", "recipe"):
        name = "basic" if scenario == "1" else "recipe"
        assert (
            tmp_path / name / "checkpoints" / "latest_checkpointed_iteration.txt"
        ).read_text().strip() == "6"
    if scenario == "3":
        assert (tmp_path / "hf" / "hf" / "model.safetensors").is_file()


def test_script_rejects_unknown_scenario(tmp_path):
    out = _script("9", runs=tmp_path)
    assert out.returncode == 2 and "choose 1-8" in out.stderr


def test_script_is_shellcheck_clean():
    shellcheck = REPO / ".venv" / "bin" / "shellcheck"
    assert shellcheck.exists(), "shellcheck is missing: it is pinned in requirements/dev.txt (make setup)"
    for script in (SCRIPT, REPO / "scripts" / "demo.sh"):
        out = subprocess.run([str(shellcheck), str(script)], capture_output=True, text=True)
        assert out.returncode == 0, out.stdout
