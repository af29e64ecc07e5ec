"""The peer to beat: a plain PyTorch training loop of a HuggingFace ``LlamaForCausalLM``.

SDPA attention, fp32 parameters with bf16 autocast (``--dtype bf16``, CUDA only) or in plain
fp32, AdamW (fused on CUDA) with Megatron's Llama betas / eps / weight decay, gradient clipping
(``--clip-grad``, 0: none), linear warm-up then cosine decay; uniform random tokens, or windows of
a Megatron indexed dataset (``--data``); optionally ``torch.compile``. Writes the common result
file.

    python -m primus.bench.hf_loop --config cfg.json --seq 2048 --mbs 4 --ga 2 --steps 30 --out r.json
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from primus.bench.results import write_result
from primus.core.memory import peak_memory


def lr_lambda(warmup: int, total: int, min_ratio: float = 0.1):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, required=True, help="HF config.json (LlamaConfig fields)")
    p.add_argument("--seq", type=int, required=True)
    p.add_argument("--mbs", type=int, required=True)
    p.add_argument("--ga", type=int, required=True, help="gradient-accumulation micro batches per step")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--warmup-lr", type=int, default=5)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--dtype", choices=("bf16", "fp32"), help="default: bf16 on CUDA, fp32 on CPU")
    p.add_argument("--clip-grad", type=float, default=1.0, help="gradient-norm clip (0: none)")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--data", type=Path, help="Megatron indexed-dataset prefix (default: random tokens)")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    dtype = a.dtype or ("bf16" if a.device == "cuda" else "fp32")
    if dtype == "bf16" and a.device != "cuda":
        p.error("--dtype bf16 (autocast) is for CUDA; a CPU run trains in fp32")

    from transformers import LlamaConfig, LlamaForCausalLM

    cuda = a.device == "cuda"
    torch.manual_seed(a.seed)
    torch.backends.cuda.matmul.allow_tf32 = True
    cfg = LlamaConfig(**{k: v for k, v in json.loads(a.config.read_text()).items() if k != "architectures"})
    cfg._attn_implementation = "sdpa"
    model = LlamaForCausalLM(cfg).to(a.device)
    opt = torch.optim.AdamW(
        model.parameters(), lr=a.lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, fused=cuda
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(a.warmup_lr, a.steps))
    forward = torch.compile(model) if a.compile else model
    gen = torch.Generator(device=a.device).manual_seed(a.seed)
    windows = None
    if a.data:
        from primus.bench.data import TokenWindows, tokens

        windows = TokenWindows(tokens(a.data), a.seq, a.seed)

    def next_batch() -> torch.Tensor:
        if windows is None:
            return torch.randint(0, cfg.vocab_size, (a.mbs, a.seq), device=a.device, generator=gen)
        return torch.from_numpy(windows.batch(a.mbs)).to(a.device, non_blocking=True)

    amp = torch.autocast(a.device, dtype=torch.bfloat16, enabled=dtype == "bf16")

    seconds, losses = [], []
    for _ in range(a.steps):
        start = time.perf_counter()
        total = torch.zeros((), device=a.device)
        for _ in range(a.ga):
            x = next_batch()
            with amp:
                loss = forward(input_ids=x, labels=x).loss
            (loss / a.ga).backward()
            total += loss.detach() / a.ga
        if a.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip_grad)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(total))  # synchronises: the step is over when this returns
        seconds.append(time.perf_counter() - start)
    write_result(a.out, step_seconds=seconds, losses=losses, dtype=dtype, **peak_memory(cuda))


if __name__ == "__main__":
    main()
