"""The fine-tuning peer: HF ``transformers`` (+ ``peft`` for LoRA), a plain training loop.

What a strong user would write: records tokenized with the chat template (loss on assistant
tokens only), packed first-fit-decreasing into bins of at most ``--seq`` tokens and fed padding-free
(``DataCollatorWithFlattening``'s layout: ``--micro-bins`` bins flattened into one row, positions
restarting per record, the first label of each record masked), SDPA attention (transformers builds
a per-record block-causal mask from the positions: no attention across records), bf16 autocast,
fused AdamW, gradient clipping, linear warm-up then cosine decay, loss normalised by the assistant
tokens of the whole step. LoRA: bf16 frozen base, fp32 adapters (peft's default). Full SFT: fp32
weights. After training: the loss on every validation record. Writes the common result file, with
the real (non-padding) tokens of each step.

    python -m primus.bench.sft_loop --model HF_DIR --data DIR --finetune lora --seq 2048 \
        --bins-per-step 8 --steps 30 --out r.json
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

import torch

from primus.bench.hf_loop import lr_lambda
from primus.bench.results import write_result
from primus.core.memory import peak_memory

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
IGNORE = -100


def tokenize(tokenizer: Any, path: Path) -> list[tuple[list[int], list[int]]]:
    """(input ids, labels with non-assistant tokens at -100) for each chat record of a JSONL file."""
    out = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        enc = tokenizer.apply_chat_template(
            json.loads(line)["messages"], tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        ids = list(enc["input_ids"])
        mask = list(enc["assistant_masks"])
        out.append((ids, [t if m else IGNORE for t, m in zip(ids, mask, strict=True)]))
    return out


def pack(lengths: list[int], capacity: int, seed: int) -> list[list[int]]:
    """Record indices in bins of at most ``capacity`` tokens: first-fit decreasing, bins shuffled."""
    bins: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        if lengths[i] > capacity:
            raise ValueError(f"record {i} has {lengths[i]} tokens, more than --seq {capacity}")
        j = next((j for j, r in enumerate(room) if r >= lengths[i]), None)
        if j is None:
            bins.append([i])
            room.append(capacity - lengths[i])
        else:
            bins[j].append(i)
            room[j] -= lengths[i]
    random.Random(seed).shuffle(bins)
    return bins


def flatten(records: list[tuple[list[int], list[int]]], device: str) -> dict[str, torch.Tensor]:
    """One padding-free row: ids, labels (each record's first label masked), restarting positions."""
    ids, labels, positions = [], [], []
    for rec_ids, rec_labels in records:
        ids += rec_ids
        labels += [IGNORE, *rec_labels[1:]]
        positions += range(len(rec_ids))
    as_row = lambda xs: torch.tensor([xs], dtype=torch.long).to(device, non_blocking=True)  # noqa: E731
    return {"input_ids": as_row(ids), "labels": as_row(labels), "position_ids": as_row(positions)}


def build_model(a: argparse.Namespace) -> Any:
    from transformers import AutoModelForCausalLM

    lora = a.finetune == "lora"
    model = AutoModelForCausalLM.from_pretrained(
        a.model,
        dtype=torch.bfloat16 if lora and a.device == "cuda" else torch.float32,
        attn_implementation="sdpa",
    ).to(a.device)
    model.config.use_cache = False  # with a cache, transformers ignores packed position ids
    if lora:
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(
            r=a.lora_dim, lora_alpha=a.lora_alpha, lora_dropout=0.0, target_modules=list(LORA_TARGETS)
        )
        model = get_peft_model(model, config)
    return model


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True, help="HF model + tokenizer directory")
    p.add_argument("--data", type=Path, required=True, help="directory with training/validation.jsonl")
    p.add_argument("--finetune", choices=("lora", "sft"), required=True)
    p.add_argument("--seq", type=int, required=True, help="bin size: tokens per packed sequence")
    p.add_argument("--bins-per-step", type=int, required=True, help="packed sequences per optimizer step")
    p.add_argument("--micro-bins", type=int, default=1, help="packed sequences flattened per forward")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--lr", type=float, required=True)
    p.add_argument("--min-lr", type=float, default=0.0)
    p.add_argument("--warmup-lr", type=int, default=5)
    p.add_argument("--weight-decay", type=float, default=0.033)
    p.add_argument("--beta2", type=float, default=0.98)
    p.add_argument("--clip-grad", type=float, default=1.0, help="0: none")
    p.add_argument("--lora-dim", type=int, default=16)
    p.add_argument("--lora-alpha", type=int, default=32)
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument(
        "--profile",
        type=int,
        nargs=2,
        metavar=("FIRST", "END"),
        help="torch.profiler over steps FIRST..END-1 (0-based): a chrome trace next to --out",
    )
    a = p.parse_args(argv)
    if a.bins_per_step % a.micro_bins:
        p.error("--bins-per-step must be a multiple of --micro-bins")

    from transformers import AutoTokenizer

    cuda = a.device == "cuda"
    torch.manual_seed(a.seed)
    torch.backends.cuda.matmul.allow_tf32 = True
    tokenizer = AutoTokenizer.from_pretrained(a.model)
    train = tokenize(tokenizer, a.data / "training.jsonl")
    valid = tokenize(tokenizer, a.data / "validation.jsonl")
    bins = pack([len(ids) for ids, _ in train], a.seq, a.seed)
    model = build_model(a)
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(
        params, lr=a.lr, betas=(0.9, a.beta2), eps=1e-8, weight_decay=a.weight_decay, fused=cuda
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(a.warmup_lr, a.steps, a.min_lr / a.lr))
    amp = torch.autocast(a.device, dtype=torch.bfloat16, enabled=cuda)
    model.train()

    seconds, losses, step_tokens = [], [], []
    cursor = 0
    profiler = None
    for step in range(a.steps):
        if a.profile and step == a.profile[0]:
            profiler = torch.profiler.profile(
                activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
            )
            profiler.__enter__()
        if profiler is not None and step == a.profile[1]:
            profiler.__exit__(None, None, None)
            a.out.parent.mkdir(parents=True, exist_ok=True)
            profiler.export_chrome_trace(str(a.out.with_name("trace.json")))
            profiler = None
        step_bins = [bins[(cursor + k) % len(bins)] for k in range(a.bins_per_step)]
        cursor += a.bins_per_step
        micro = [
            [train[i] for b in step_bins[k : k + a.micro_bins] for i in b]
            for k in range(0, a.bins_per_step, a.micro_bins)
        ]
        targets = sum(sum(1 for t in labels[1:] if t != IGNORE) for m in micro for _, labels in m)
        start = time.perf_counter()
        total = torch.zeros((), device=a.device)
        for records in micro:
            batch = flatten(records, a.device)
            with amp:
                # num_items_in_batch: the loss is summed over this micro-batch, divided by the step's targets
                loss = model(**batch, num_items_in_batch=targets).loss
            loss.backward()
            total += loss.detach()
        if a.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(params, a.clip_grad)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(total))  # synchronises: the step is over when this returns
        seconds.append(time.perf_counter() - start)
        step_tokens.append(sum(len(ids) for m in micro for ids, _ in m))
    memory = peak_memory(cuda)
    write_result(
        a.out,
        step_seconds=seconds,
        losses=losses,
        step_tokens=step_tokens,
        validation_loss=validation_loss(model, valid, a, amp),
        dtype="bf16" if cuda else "fp32",
        **memory,
    )


@torch.no_grad()
def validation_loss(
    model: Any, records: list[tuple[list[int], list[int]]], a: argparse.Namespace, amp: Any
) -> float:
    """Mean loss over the assistant tokens of every validation record (packed as in training)."""
    model.eval()
    total, count = 0.0, 0
    for b in pack([len(ids) for ids, _ in records], a.seq, a.seed):
        batch = flatten([records[i] for i in b], a.device)
        targets = int((batch["labels"][:, 1:] != IGNORE).sum())
        with amp:
            total += float(model(**batch, num_items_in_batch=1).loss)
        count += targets
    return total / count


if __name__ == "__main__":
    main()
