"""The fine-tuning peer through TRL's ``SFTTrainer``, configured as its docs recommend for speed.

Packing ``bfd`` (best-fit decreasing into rows of ``--seq`` tokens, padding-free: records
flattened with restarting positions), assistant-only loss from the chat template's generation
markers, bf16, fused AdamW, the same schedule and hyper-parameters as ``primus.bench.sft_loop``,
SDPA attention (``use_cache`` off, so transformers masks across records). LoRA through TRL's
``peft_config``. Step times come from a callback that synchronises the GPU at each step's ends;
real tokens per step from TRL's own ``num_tokens`` count. Writes the common result file.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from primus.bench.results import write_result
from primus.bench.sft_loop import LORA_TARGETS, tokenize, validation_loss
from primus.core.memory import peak_memory


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("--model", "--data", "--out"):
        p.add_argument(name, type=Path, required=True)
    p.add_argument("--finetune", choices=("lora", "sft"), required=True)
    for name in ("--seq", "--bins-per-step", "--steps"):
        p.add_argument(name, type=int, required=True)
    p.add_argument("--micro-bins", type=int, default=1)
    p.add_argument("--lr", type=float, required=True)
    p.add_argument("--min-lr", type=float, default=0.0)
    p.add_argument("--warmup-lr", type=int, default=5)
    p.add_argument("--weight-decay", type=float, default=0.033)
    p.add_argument("--beta2", type=float, default=0.98)
    p.add_argument("--clip-grad", type=float, default=1.0)
    p.add_argument("--lora-dim", type=int, default=16)
    p.add_argument("--lora-alpha", type=int, default=32)
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--seed", type=int, default=1234)
    a = p.parse_args(argv)

    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    cuda = a.device == "cuda"
    torch.backends.cuda.matmul.allow_tf32 = True
    tokenizer = AutoTokenizer.from_pretrained(a.model)
    records = [json.loads(line) for line in (a.data / "training.jsonl").read_text().splitlines() if line]
    lora = a.finetune == "lora"
    model = AutoModelForCausalLM.from_pretrained(
        a.model, dtype=torch.bfloat16 if lora and cuda else torch.float32, attn_implementation="sdpa"
    )
    model.config.use_cache = False  # with a cache, transformers ignores packed position ids
    peft_config = None
    if lora:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=a.lora_dim, lora_alpha=a.lora_alpha, lora_dropout=0.0, target_modules=list(LORA_TARGETS)
        )
    config = SFTConfig(
        output_dir=str(a.out.parent / "trl"),
        max_steps=a.steps,
        per_device_train_batch_size=a.micro_bins,
        gradient_accumulation_steps=a.bins_per_step // a.micro_bins,
        learning_rate=a.lr,
        lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr": a.min_lr},
        warmup_steps=a.warmup_lr,
        weight_decay=a.weight_decay,
        adam_beta2=a.beta2,
        adam_epsilon=1e-8,
        max_grad_norm=a.clip_grad,
        optim="adamw_torch_fused" if cuda else "adamw_torch",
        bf16=cuda,
        max_length=a.seq,
        packing=True,
        packing_strategy="bfd",
        assistant_only_loss=True,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=a.seed,
        dataloader_num_workers=0,
        use_cpu=not cuda,
    )

    class Timer(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self.start = 0.0

        def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001
            if cuda:
                torch.cuda.synchronize()
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            if cuda:
                torch.cuda.synchronize()
            self.seconds.append(time.perf_counter() - self.start)

    timer = Timer()
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(records),
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[timer],
    )
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    cumulative = [float(h.get("num_tokens", 0)) for h in logs]
    step_tokens = [b - a_ for a_, b in zip([0.0, *cumulative[:-1]], cumulative, strict=True)]
    memory = peak_memory(cuda)
    amp = torch.autocast(a.device, dtype=torch.bfloat16, enabled=cuda)
    valid = tokenize(tokenizer, a.data / "validation.jsonl")
    write_result(
        a.out,
        step_seconds=timer.seconds,
        losses=[float(h["loss"]) for h in logs],
        step_tokens=step_tokens,
        validation_loss=validation_loss(trainer.model, valid, a, amp),
        dtype="bf16" if cuda else "fp32",
        **memory,
    )


if __name__ == "__main__":
    main()
