"""HF <-> Megatron conversion on CPU with tiny random HF models built locally (no hub).

The conversions run in subprocesses (process groups and the CPU redirections are
process-global); each subprocess converts a batch of architectures and writes its numbers to
a JSON file the tests read. Run by hand:
``python -m tests.backends.megatron_bridge.test_hf_conversion WORKDIR llama qwen3``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

VOCAB = 256
COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
    tie_word_embeddings=False,
)
#: name -> (transformers config class, model class, extra config values)
TINY_MODELS: dict[str, tuple[str, str, dict]] = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", {}),
    "mistral": ("MistralConfig", "MistralForCausalLM", {"sliding_window": None}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {}),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {"head_dim": 16}),
    "gemma": ("GemmaConfig", "GemmaForCausalLM", {"head_dim": 16, "tie_word_embeddings": True}),
    "gemma2": (
        "Gemma2Config",
        "Gemma2ForCausalLM",
        {"head_dim": 16, "tie_word_embeddings": True, "sliding_window": 64},
    ),
    "qwen3_moe": (
        "Qwen3MoeConfig",
        "Qwen3MoeForCausalLM",
        {"head_dim": 16, "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32},
    ),
}
#: two batches, run side by side (CI has 2 cores; each subprocess pays the ~10 s import once)
BATCHES = (("llama", "mistral", "qwen2", "gemma"), ("qwen3", "gemma2", "qwen3_moe"))


def make_tiny_hf(name: str, out: Path, *, tokenizer: bool = True) -> Path:
    """A random tiny HF model of architecture ``name`` saved in fp32 (+ a word-level tokenizer)."""
    import torch
    import transformers

    config_cls, model_cls, extra = TINY_MODELS[name]
    torch.manual_seed(0)
    config = getattr(transformers, config_cls)(**{**COMMON, **extra})
    model = getattr(transformers, model_cls)(config).eval()
    model.save_pretrained(out, safe_serialization=True)
    if tokenizer:
        from tokenizers import Tokenizer, models, pre_tokenizers

        vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, **{f"w{i}": i for i in range(4, VOCAB)}}
        tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        transformers.PreTrainedTokenizerFast(
            tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
        ).save_pretrained(out)
    return out


def roundtrip(names: list[str], work: Path) -> dict:
    """HF -> Megatron -> HF for each architecture, in this process; numbers per architecture."""
    from primus.backends.megatron_bridge.hf_conversion import export_hf, import_hf
    from primus.backends.megatron_bridge.hf_verify import compare_hf_weights, verify_logits

    results = {}
    for name in names:
        hf, ckpt, out = work / name / "hf", work / name / "ckpt", work / name / "hf_out"
        make_tiny_hf(name, hf)
        try:
            t0 = time.perf_counter()
            import_hf(hf, ckpt, device="cpu")
            t1 = time.perf_counter()
            export_hf(ckpt, out, device="cpu")
            t2 = time.perf_counter()
            weights = compare_hf_weights(hf, out)
            logits = verify_logits(hf, ckpt, device="cpu")
            t3 = time.perf_counter()
        except Exception as exc:  # recorded, asserted by the test (one arch must not hide another)
            results[name] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
            continue
        results[name] = {
            "weights_exact": weights.exact,
            "weights_max_abs_diff": weights.max_abs_diff,
            "weights_tensors": weights.tensors,
            "weights_missing": weights.missing,
            "weights_extra": weights.extra,
            "dtype_mismatches": weights.dtype_mismatches,
            "logits_max_abs_diff": logits.max_abs_diff,
            "logits_min_cosine": logits.min_cosine,
            "next_token_agreement": logits.next_token_agreement,
            "tokenizer_copied": (out / "tokenizer.json").is_file(),
            "seconds": {"import": t1 - t0, "export": t2 - t1, "verify": t3 - t2},
        }
    return results


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PRIMUS_PATCHES"}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture(scope="module")
def roundtrips(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("roundtrip")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.backends.megatron_bridge.test_hf_conversion", str(work), *batch],
            cwd=REPO,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for batch in BATCHES
    ]
    results = {}
    for proc in procs:
        output, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, output[-4000:]
        results.update(json.loads(output.strip().splitlines()[-1]))
    (work / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return results


#: Bridge builds these from Transformer Engine layers only (Gemma's zero-centred norm, which
#: Megatron-Core has only with TE or Apex, comes from Primus's `zero_centered_norm` patch)
TE_ONLY_LAYER_SPEC = ("gemma2",)


def _needs_te(name: str) -> bool:
    from primus.core.environment import module_importable

    return name in TE_ONLY_LAYER_SPEC and not module_importable("transformer_engine")


@pytest.mark.megatron
@pytest.mark.slow
@pytest.mark.parametrize("name", list(TINY_MODELS))
def test_roundtrip_is_exact_and_logits_match(roundtrips, name):
    r = roundtrips[name]
    if _needs_te(name):
        assert "layer spec fuses its post-attention / post-MLP norms into TE linear layers" in r.get(
            "error", ""
        ), r
        pytest.skip(f"{name}: needs Transformer Engine (clear error checked)")
    assert "error" not in r, r.get("error")
    assert r["weights_missing"] == [] and r["weights_extra"] == [] and r["dtype_mismatches"] == []
    assert r["weights_exact"] and r["weights_max_abs_diff"] == 0.0, r
    assert r["logits_max_abs_diff"] <= 1e-4, r
    assert r["logits_min_cosine"] > 0.9999 and r["next_token_agreement"] == 1.0, r
    assert r["tokenizer_copied"]


def _cli(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "primus", *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> Path:
    return make_tiny_hf("llama", tmp_path_factory.mktemp("llama") / "hf")


@pytest.mark.megatron
@pytest.mark.slow
def test_cli_import_then_verify_fails_beyond_atol(imported_base, finetune_base, tmp_path):
    """The import is the session's (``conftest.imported_base``: a tiny Llama with a BPE tokenizer,
    also the start of an SFT run)."""
    ckpt, out = imported_base
    assert "imported LlamaForCausalLM" in out.stdout
    assert (ckpt / "iter_0000000" / "run_config.yaml").is_file()
    # fp32 logits differ by ~1e-7: an atol of 0 must fail with exit 1 and the table
    hf = str(finetune_base.hf)
    out = _cli("convert", "verify", "--hf", hf, "--ckpt", str(ckpt), "--atol", "0", cwd=tmp_path)
    assert out.returncode == 1, out.stderr[-3000:]
    assert "max |diff|" in out.stdout and "100.00%" in out.stdout
    assert "FAIL" in out.stdout


@pytest.mark.megatron
@pytest.mark.slow
def test_train_from_hf_and_export_to_hf(tiny_llama, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from primus.backends.megatron_bridge.hf_verify import compare_hf_weights

    run_dir = tmp_path / "run"
    out = _cli(
        "train",
        "--convert_from_hf",
        "--hf_model_name_or_path",
        str(tiny_llama),
        "--convert_to_hf",
        "--run_dir",
        str(run_dir),
        "train.train_iters=5",
        "train.global_batch_size=4",
        "train.micro_batch_size=2",
        "model.seq_length=32",
        "validation.eval_iters=0",
        "model.bias_activation_fusion=false",  # torch.compile'd fusions: ~20 s to compile on a CPU
        "model.bias_dropout_fusion=false",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    assert "loading HuggingFace-format checkpoint from" in (run_dir / "megatron.log").read_text()
    config = (run_dir / "config.yaml").read_text()
    assert f"# hf:{tiny_llama}" in config
    # the HF model's own tokenizer, and a warm-up that fits a 5-iteration run
    assert f"tokenizer_type: HuggingFaceTokenizer  # hf:{tiny_llama}" in config
    assert f"tokenizer_model: {tiny_llama}  # hf:{tiny_llama}" in config
    assert "lr_warmup_iters: 1  # derived:10% of train_iters (was 500)" in config
    exported = run_dir / "hf"
    assert (exported / "config.json").is_file() and (exported / "tokenizer.json").is_file()
    weights = compare_hf_weights(tiny_llama, exported)
    assert not weights.missing and not weights.extra
    assert weights.max_abs_diff > 0  # trained
    model = AutoModelForCausalLM.from_pretrained(str(exported), dtype=torch.float32)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[1, 5, 9, 42]])).logits
    assert logits.shape == (1, 4, VOCAB) and torch.isfinite(logits).all()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("import", "--hf", "{tmp}/missing", "--out", "{tmp}/c"),
            "--hf: HF model directory {tmp}/missing does not exist",
        ),
        (
            ("import", "--hf", "{tmp}", "--out", "{tmp}/c"),
            "has no config.json, so it is not a HuggingFace model directory",
        ),
        (
            ("import", "--hf", "org/model", "--out", "{tmp}/c"),
            "'org/model' is not a local directory; this machine has no network",
        ),
        (("export", "--ckpt", "{tmp}", "--out", "{tmp}/h"), "holds no Megatron-Bridge checkpoint"),
        (
            ("export", "--ckpt", "{tmp}/none", "--out", "{tmp}/h"),
            "checkpoint directory {tmp}/none does not exist",
        ),
        (("verify", "--hf", "{tmp}/missing", "--ckpt", "{tmp}"), "does not exist"),
    ],
)
def test_cli_user_errors(tmp_path, args, message, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    out = _cli("convert", *(a.format(tmp=tmp_path) for a in args), cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("primus: error: ") and message.format(tmp=tmp_path) in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_cli_tensor_parallel_needs_as_many_ranks(tiny_llama, tmp_path):
    out = _cli(
        "convert", "import", "--hf", str(tiny_llama), "--out", str(tmp_path / "c"), "--tp", "2", cwd=tmp_path
    )
    assert out.returncode == 2, out.stderr[-2000:]
    assert (
        "--tp/--pp: world size 1 is not divisible by tp*pp = 2; launch with `torchrun --nproc-per-node 2"
        in out.stderr
    )
    assert "Traceback" not in out.stderr and not (tmp_path / "c").exists()


def _torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "primus",
        *args,
    ]
    return subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=900)


def _safetensors(hf_dir: Path) -> dict:
    from safetensors.torch import load_file

    return {k: v for f in sorted(hf_dir.glob("*.safetensors")) for k, v in load_file(f).items()}


@pytest.mark.parametrize("flag", [pytest.param("--tp", marks=pytest.mark.nightly), "--pp"])
def test_parallel_import_on_two_cpu_ranks_verifies_and_exports_exactly(flag, tmp_path):
    """torchrun x 2 on gloo: a TP-2 / PP-2 import, resharded to one rank for verify (and export).

    The source has no tokenizer files: the export must still work (and have none)."""
    hf = make_tiny_hf("llama", tmp_path / "hf", tokenizer=False)
    ckpt = tmp_path / "ckpt"
    imported = _torchrun(
        "convert", "import", "--hf", str(hf), "--out", str(ckpt), flag, "2", "--device", "cpu", cwd=tmp_path
    )
    assert imported.returncode == 0, imported.stderr[-4000:]
    verified = _cli(
        "convert", "verify", "--hf", str(hf), "--ckpt", str(ckpt), "--device", "cpu", cwd=tmp_path
    )
    assert verified.returncode == 0, verified.stderr[-4000:]
    assert (
        "result                    PASS" in verified.stdout
        and "next-token agreement      100.00%" in verified.stdout
    )
    if flag == "--pp":
        return  # the export path (resharding load + save) is the same as for TP; once is enough in CI
    exported = tmp_path / "exported"
    out = _cli(
        "convert",
        "export",
        "--ckpt",
        str(ckpt),
        "--out",
        str(exported),
        "--hf-source",
        str(hf),
        "--device",
        "cpu",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    original, roundtrip = _safetensors(hf), _safetensors(exported)
    assert original.keys() == roundtrip.keys()
    assert max(float((original[k] - roundtrip[k]).abs().max()) for k in original) == 0.0
    assert not any((exported / name).exists() for name in ("tokenizer.json", "tokenizer_config.json"))


def test_hub_id_not_in_offline_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # an empty cache
    out = _cli("convert", "import", "--hf", "org/model", "--out", str(tmp_path / "c"), cwd=tmp_path)
    assert out.returncode == 2 and "hub id 'org/model' is not in the local HF cache" in out.stderr


@pytest.mark.megatron
def test_unsupported_architecture_lists_closest(tmp_path):
    hf = tmp_path / "mixtral"
    hf.mkdir()
    (hf / "config.json").write_text(
        json.dumps({"architectures": ["MixtralForCausalLM"], "model_type": "mixtral"})
    )
    out = _cli("convert", "import", "--hf", str(hf), "--out", str(tmp_path / "c"), cwd=tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "architecture MixtralForCausalLM is not supported by the installed Megatron-Bridge" in out.stderr
    assert "closest supported:" in out.stderr and "`primus convert list`" in out.stderr


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.WARNING)
    work_dir = Path(sys.argv[1])
    print(json.dumps(roundtrip(sys.argv[2:], work_dir)))
