"""Numerical checks of a conversion: HF vs Megatron logits, and HF vs HF weights.

Both models run in fp32 on the same fixed random token ids; Megatron gets an explicit causal
mask (its default mask is built on ``cuda``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from primus.backends.megatron_bridge.hf_conversion import (
    check_supported,
    load_megatron,
    megatron_session,
    resolve_checkpoint,
    resolve_hf_dir,
)

DEFAULT_ATOL = 1e-4


@dataclass
class LogitsComparison:
    """HF vs Megatron logits on ``batch`` x ``seq_len`` fixed tokens."""

    architecture: str
    batch: int
    seq_len: int
    vocab: int
    max_abs_diff: float
    mean_abs_diff: float
    min_cosine: float
    next_token_agreement: float
    atol: float

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.atol

    def table(self) -> str:
        rows = [
            ("architecture", self.architecture),
            ("inputs", f"{self.batch} x {self.seq_len} tokens (vocab {self.vocab}), fp32"),
            ("max |diff|", f"{self.max_abs_diff:.3e}  (atol {self.atol:.1e})"),
            ("mean |diff|", f"{self.mean_abs_diff:.3e}"),
            ("cosine (min over tokens)", f"{self.min_cosine:.8f}"),
            ("next-token agreement", f"{self.next_token_agreement:.2%}"),
            ("result", "PASS" if self.ok else "FAIL"),
        ]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def compare_logits(hf_logits, mg_logits, architecture: str, atol: float) -> LogitsComparison:
    import torch

    a, b = hf_logits.double(), mg_logits.double()
    diff = (a - b).abs()
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1)
    return LogitsComparison(
        architecture=architecture,
        batch=a.shape[0],
        seq_len=a.shape[1],
        vocab=a.shape[2],
        max_abs_diff=diff.max().item(),
        mean_abs_diff=diff.mean().item(),
        min_cosine=cos.min().item(),
        next_token_agreement=(a.argmax(-1) == b.argmax(-1)).double().mean().item(),
        atol=atol,
    )


def verify_logits(
    hf: str | os.PathLike,
    ckpt: str | os.PathLike,
    *,
    atol: float = DEFAULT_ATOL,
    batch: int = 2,
    seq_len: int = 16,
    seed: int = 1234,
    device: str = "auto",
    trust_remote_code: bool = False,
) -> LogitsComparison:
    """Run the HF model of ``hf`` and the Megatron model of ``ckpt`` on the same tokens."""
    import torch

    hf_dir = resolve_hf_dir(hf)
    ckpt_iter = resolve_checkpoint(ckpt)
    arch = check_supported(hf_dir)
    with megatron_session(device) as env:
        from transformers import AutoModelForCausalLM

        torch_device = torch.device("cpu" if env.on_cpu else "cuda")
        hf_model = AutoModelForCausalLM.from_pretrained(
            str(hf_dir), dtype=torch.float32, trust_remote_code=trust_remote_code
        )
        hf_model = hf_model.to(torch_device).eval()
        vocab = hf_model.config.get_text_config().vocab_size
        ids = torch.randint(0, vocab, (batch, seq_len), generator=torch.Generator().manual_seed(seed))
        ids = ids.to(torch_device)
        positions = torch.arange(seq_len, device=torch_device).unsqueeze(0).expand(batch, seq_len)
        causal = torch.triu(torch.ones(1, 1, seq_len, seq_len, dtype=torch.bool, device=torch_device), 1)
        megatron = load_megatron(ckpt_iter, env, fp32=True)[0]
        megatron = megatron.to(torch_device).eval()
        with torch.no_grad():
            hf_logits = hf_model(input_ids=ids).logits.float()
            mg_logits = megatron(input_ids=ids, position_ids=positions, attention_mask=causal)
        return compare_logits(hf_logits.cpu(), mg_logits[..., :vocab].float().cpu(), arch, atol)


def load_safetensors_dir(path: str | os.PathLike) -> dict:
    from safetensors.torch import load_file

    tensors = {}
    for file in sorted(Path(path).glob("*.safetensors")):
        tensors.update(load_file(str(file)))
    return tensors


@dataclass
class WeightsComparison:
    tensors: int
    missing: list[str]
    extra: list[str]
    max_abs_diff: float
    worst: str | None
    dtype_mismatches: list[str]

    @property
    def exact(self) -> bool:
        return not (self.missing or self.extra or self.dtype_mismatches) and self.max_abs_diff == 0.0


def compare_hf_weights(a_dir: str | os.PathLike, b_dir: str | os.PathLike) -> WeightsComparison:
    """Tensor-by-tensor comparison of two HF safetensors directories."""
    a, b = load_safetensors_dir(a_dir), load_safetensors_dir(b_dir)
    common = sorted(set(a) & set(b))
    worst, worst_diff = None, 0.0
    for name in common:
        if a[name].shape != b[name].shape:
            worst, worst_diff = name, float("inf")
            continue
        diff = (a[name].double() - b[name].double()).abs().max().item() if a[name].numel() else 0.0
        if diff > worst_diff or worst is None:
            worst, worst_diff = name, diff
    return WeightsComparison(
        tensors=len(common),
        missing=sorted(set(a) - set(b)),
        extra=sorted(set(b) - set(a)),
        max_abs_diff=worst_diff,
        worst=worst,
        dtype_mismatches=[n for n in common if a[n].dtype != b[n].dtype],
    )
