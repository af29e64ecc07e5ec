"""A DoRA fine-tuning checkpoint for ``test_peft_export.py``, made on a CPU in a subprocess, and
the export measurement of any LoRA / DoRA checkpoint (the LoRA one is the session's LoRA run).

``base WORK``: a tiny HF Llama (2 layers, hidden 64, fp32) + a trained BPE tokenizer + prompt /
completion JSONL. ``finetune WORK lora|dora``: Bridge's ``finetune()`` on that model (the config
built by Primus's backend, then a LoRA / DoRA and the SFT dataset set on it), 6 iterations,
checkpoint in ``WORK/<mode>/checkpoints``, then measured as below.
``measure CKPT_DIR HF_DIR OUT_DIR RESULT``: the checkpoint exported with ``export_finetuned`` to
``OUT_DIR`` and the logits' max differences (merged HF, PEFT adapter and base vs the Megatron
model with its adapters) written to ``RESULT`` (JSON).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

TARGETS = ["linear_qkv", "linear_proj", "linear_fc1", "linear_fc2"]
DIM, ALPHA, ITERS = 8, 16, 6
CONFIG = f"""name: peft_export_test
model:
  seq_length: 64
  bias_activation_fusion: false  # torch.compile'd fusions: ~20 s to compile on a CPU
  bias_dropout_fusion: false
train:
  train_iters: {ITERS}
  global_batch_size: 8
  micro_batch_size: 4
validation:
  eval_interval: 1000
  eval_iters: 0
optimizer:
  lr: 5.0e-3
  min_lr: 5.0e-4
scheduler:
  lr_warmup_iters: 1
checkpoint:
  save_interval: {ITERS}
logger:
  log_interval: 1
rng:
  seed: 1234
"""


def _records(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.randint(0, 50), rng.randint(0, 50)
        out.append({"input": f"What is {a} plus {b}?", "output": f"{a} plus {b} is {a + b}."})
    return out


def make_base(work: Path) -> Path:
    """WORK/hf (model + tokenizer) and WORK/data/{training,validation}.jsonl; returns WORK/hf."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from primus.data.tokenizer import train_bpe_tokenizer

    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    splits = {"training": _records(128, 0), "validation": _records(16, 1)}
    for split, rows in splits.items():
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    hf = work / "hf"
    texts = [f"{r['input']} {r['output']}" for r in splits["training"]]
    train_bpe_tokenizer(texts, 320, hf)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=320,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=False,
    )
    LlamaForCausalLM(config).save_pretrained(hf)
    return hf


def finetune(work: Path, mode: str) -> None:
    import primus.backends  # noqa: F401  registers the backends
    from primus.core.backend import BACKENDS
    from primus.core.runtime import TrainRequest, build_context

    (work / f"{mode}.yaml").write_text(CONFIG)
    ctx = build_context(
        TrainRequest(
            config_path=str(work / f"{mode}.yaml"),
            flags={
                "convert_from_hf": True,
                "hf_model_name_or_path": str(work / "hf"),
                "run_dir": str(work / mode),
                "device": "cpu",
            },
        )
    )
    adapter = BACKENDS.get("megatron_bridge")
    adapter.prepare_environment(ctx)  # setup patches: TE placeholder, CPU execution
    c = adapter.build_config(ctx).container  # TE-free model, CPU training settings
    from megatron.bridge.data.builders import GPTSFTDatasetConfig, PromptCompletionSFTPreprocessingConfig
    from megatron.bridge.peft.dora import DoRA
    from megatron.bridge.peft.lora import LoRA
    from megatron.bridge.training.finetune import finetune as bridge_finetune
    from megatron.bridge.training.gpt_step import forward_step

    from primus.backends.megatron_bridge.patches import peft_without_te

    peft_without_te.install()
    c.dataset = GPTSFTDatasetConfig(
        seq_length=c.model.seq_length,
        dataset_root=str(work / "data"),
        preprocessing=PromptCompletionSFTPreprocessingConfig(
            prompt_column="input", completion_column="output", separator=" ", loss_mode="completion"
        ),
        seed=1234,
        do_validation=False,
        do_test=False,
        dataloader_type="batch",
        num_workers=0,
        pin_memory=False,
        persistent_workers=False,
    )
    c.checkpoint.pretrained_checkpoint = str(work / "hf")
    c.checkpoint.save = str(work / mode / "checkpoints")
    c.checkpoint.load = None
    c.peft = (LoRA if mode == "lora" else DoRA)(target_modules=TARGETS, dim=DIM, alpha=ALPHA)
    bridge_finetune(c, forward_step)
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def measure(checkpoints: Path, hf: Path, out: Path, result_path: Path) -> None:
    """Export the checkpoint; max |logit diff| of merged HF, PEFT adapter and base vs Megatron."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from primus.backends.megatron_bridge import peft_export
    from primus.backends.megatron_bridge.hf_conversion import megatron_session

    vocab = AutoConfig.from_pretrained(str(hf)).vocab_size
    ids = torch.randint(0, vocab, (2, 16), generator=torch.Generator().manual_seed(1))
    positions = torch.arange(16).unsqueeze(0).expand(2, 16)
    causal = torch.triu(torch.ones(1, 1, 16, 16, dtype=torch.bool), 1)

    def hf_logits(path: Path, adapter: Path | None = None):
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
        if adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(adapter))
        with torch.no_grad():
            return model.eval()(input_ids=ids).logits.float()

    def max_diff(a, b) -> float:
        return float((a - b).abs().max())

    ckpt = peft_export.resolve_checkpoint(checkpoints)
    r = peft_export.export_finetuned(ckpt, out, hf_source=None, device="cpu")
    peft = peft_export.build_peft(peft_export.read_run_config(ckpt)["peft"], "run_config.yaml")
    with megatron_session("cpu") as env:  # the Megatron model with its adapters, as trained
        from megatron.bridge import AutoBridge

        model = peft_export.load_finetuned(AutoBridge.from_hf_pretrained(str(hf)), peft, ckpt, env, None)
        with torch.no_grad():
            megatron = model[0].eval()(input_ids=ids, position_ids=positions, attention_mask=causal)
        megatron = megatron[..., :vocab].float()
    merged = hf_logits(out)
    result = {
        "adapter_dir": str(r.adapter) if r.adapter else None,
        "merged_vs_megatron": max_diff(merged, megatron),
        "base_vs_megatron": max_diff(hf_logits(hf), megatron),
    }
    if r.adapter:
        result["peft_vs_merged"] = max_diff(hf_logits(hf, r.adapter), merged)
    result_path.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    command, args = sys.argv[1], [Path(a) for a in sys.argv[2:]]
    if command == "base":
        make_base(args[0])
    elif command == "measure":
        measure(*args)
    else:  # finetune, then export and measure in the same process (one ~10 s import)
        workdir, mode = args[0], sys.argv[3]
        finetune(workdir, mode)
        measure(
            workdir / mode / "checkpoints",
            workdir / "hf",
            workdir / f"export_{mode}" / "hf",
            workdir / f"measure_{mode}.json",
        )
