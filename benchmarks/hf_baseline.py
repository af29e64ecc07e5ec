"""The peer to beat: a plain HuggingFace + PyTorch training loop of the same model shape.

LlamaForCausalLM (SDPA attention) from the shipped Llama-3.2-1B config, fp32 parameters with
bf16 autocast, fused AdamW, random tokens; optional ``torch.compile``. Prints one JSON line.

    python benchmarks/hf_baseline.py --seq 2048 --mbs 4 --ga 2 --iters 30 [--compile]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from transformers import AutoConfig, LlamaForCausalLM

CONFIG = (
    Path(__file__).resolve().parents[1]
    / "primus/backends/megatron_bridge/data/hf_configs/meta-llama/Llama-3.2-1B"
)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--mbs", type=int, default=4)
    p.add_argument("--ga", type=int, default=2)
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--compile", action="store_true")
    a = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    cfg = AutoConfig.from_pretrained(CONFIG, attn_implementation="sdpa")
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1, fused=True)
    forward = torch.compile(model) if a.compile else model

    def step() -> float:
        for _ in range(a.ga):
            x = torch.randint(0, cfg.vocab_size, (a.mbs, a.seq), device="cuda")
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = forward(input_ids=x, labels=x).loss
            (loss / a.ga).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    for _ in range(a.warmup):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(a.iters - a.warmup):
        loss = step()
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / (a.iters - a.warmup)
    tokens = a.mbs * a.ga * a.seq
    print(
        json.dumps(
            {
                "system": "hf_compiled" if a.compile else "hf_eager",
                "seq": a.seq,
                "ms_per_iter": seconds * 1e3,
                "tokens_per_s": tokens / seconds,
                "peak_mem_gb": torch.cuda.max_memory_allocated() / 1e9,
                "loss": loss,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
