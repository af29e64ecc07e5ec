"""Benchmark workloads: one model shape, trained the same way by every system."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from primus.bench.finetune_data import RecordSpec
from primus.core.errors import PrimusUserError, did_you_mean

REPO = Path(__file__).resolve().parents[2]
HF_CONFIGS = REPO / "primus/backends/megatron_bridge/data/hf_configs"


@dataclass(frozen=True)
class ModelShape:
    """A Llama-style decoder: what the FLOP formula and the HF model need."""

    layers: int
    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    vocab: int
    tied_embeddings: bool
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


@dataclass(frozen=True)
class Workload:
    """A model plus how it is trained: tokens per step and micro-batch tokens are fixed per workload;
    micro and global batch follow from the sequence length."""

    name: str
    description: str
    shape: ModelShape
    default_seqs: tuple[int, ...]
    tokens_per_step: int
    tokens_per_micro_batch: int
    #: for Primus / Megatron-Bridge: a recipe, or a Primus YAML building the model from scratch
    recipe: str | None = None
    primus_config: str | None = None
    #: for the HF loop: a shipped config.json directory (else built from ``shape``)
    hf_config_dir: str | None = None
    lr: float = 3e-4
    extra_overrides: tuple[str, ...] = field(default_factory=tuple)
    #: False: too large to train on a CPU in benchmark time
    runs_on_cpu: bool = True
    #: fine-tuning: what trains (LoRA adapters or every weight); None: pretraining
    finetune: Literal["lora", "sft"] | None = None
    #: fine-tuning: the synthetic chat records every system reads
    records: RecordSpec | None = None
    min_lr: float = 0.0
    lora_dim: int = 16
    lora_alpha: int = 32
    #: fine-tuning, HF peers: packed sequences flattened into one forward (padding-free)
    peer_micro_bins: int = 1

    def batch(self, seq: int) -> tuple[int, int]:
        """(micro batch size, global batch size) in sequences; fine-tuning: packed sequences of
        ``seq`` tokens, one per micro batch (Megatron-Bridge's packed format)."""
        if self.finetune:
            if self.tokens_per_step % seq:
                raise PrimusUserError(
                    f"workload {self.name!r} needs a sequence length dividing {self.tokens_per_step} tokens per step",
                    key="--seq",
                    source="cli",
                    hint=f"try {' or '.join(map(str, self.default_seqs))}",
                )
            return 1, self.tokens_per_step // seq
        if self.tokens_per_micro_batch % seq or self.tokens_per_step % self.tokens_per_micro_batch:
            raise PrimusUserError(
                f"workload {self.name!r} needs a sequence length dividing {self.tokens_per_micro_batch} "
                f"tokens per micro batch",
                key="--seq",
                source="cli",
                hint=f"try {' or '.join(map(str, self.default_seqs))}",
            )
        return self.tokens_per_micro_batch // seq, self.tokens_per_step // seq

    def hf_config(self, seq: int) -> dict[str, Any]:
        """The HF LlamaConfig fields (a shipped config.json, or built from the shape)."""
        if self.hf_config_dir:
            cfg = json.loads((HF_CONFIGS / self.hf_config_dir / "config.json").read_text())
        else:
            s = self.shape
            cfg = {
                "architectures": ["LlamaForCausalLM"],
                "model_type": "llama",
                "vocab_size": s.vocab,
                "hidden_size": s.hidden,
                "intermediate_size": s.ffn,
                "num_hidden_layers": s.layers,
                "num_attention_heads": s.heads,
                "num_key_value_heads": s.kv_heads,
                "hidden_act": "silu",
                "rms_norm_eps": s.norm_eps,
                "rope_theta": s.rope_theta,
                "tie_word_embeddings": s.tied_embeddings,
                "attention_bias": False,
                "mlp_bias": False,
            }
        cfg["max_position_embeddings"] = max(int(cfg.get("max_position_embeddings") or 0), seq)
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


LLAMA32_1B = ModelShape(
    layers=16,
    hidden=2048,
    ffn=8192,
    heads=32,
    kv_heads=8,
    vocab=128256,
    tied_embeddings=True,
    rope_theta=500000.0,
)
TINY = ModelShape(layers=2, hidden=64, ffn=256, heads=4, kv_heads=2, vocab=256, tied_embeddings=False)
#: the tiny shape with room for a trained BPE tokenizer (at least 258 ids)
TINY_FT = ModelShape(layers=2, hidden=64, ffn=256, heads=4, kv_heads=2, vocab=512, tied_embeddings=False)
#: synthetic chat records of 200-1500 tokens (a few records per 2048-token packed sequence)
LLAMA_RECORDS = RecordSpec(
    records=2000, validation_records=120, min_tokens=200, max_tokens=1500, tokenizer_vocab=8192, words=6000
)
TINY_RECORDS = RecordSpec(
    records=160, validation_records=16, min_tokens=20, max_tokens=200, tokenizer_vocab=400, words=60
)


def _finetune(name: str, kind: Literal["lora", "sft"], shape: ModelShape, **fields: Any) -> Workload:
    what = "LoRA (q,k,v,o,gate,up,down; dim 16, alpha 32)" if kind == "lora" else "full SFT"
    fields.setdefault("description", f"{fields.pop('model_text')} {what} on synthetic chat records, packed")
    return Workload(name=name, shape=shape, finetune=kind, tokens_per_micro_batch=0, **fields)


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload(
            name="llama32_1b",
            description="Llama-3.2-1B (the llama32_1b recipe), 16384 tokens per step",
            shape=LLAMA32_1B,
            default_seqs=(2048, 4096),
            tokens_per_step=16384,
            tokens_per_micro_batch=8192,
            recipe="llama32_1b",
            hf_config_dir="meta-llama/Llama-3.2-1B",
            runs_on_cpu=False,
        ),
        Workload(
            name="tiny",
            description="a 2-layer Llama (hidden 64) for CPU smoke tests of the harness",
            shape=TINY,
            default_seqs=(64,),
            tokens_per_step=512,
            tokens_per_micro_batch=256,
            primus_config="primus/configs/tiny_llama.yaml",
            lr=3e-3,
        ),
        *(
            _finetune(
                f"llama32_1b_{kind}",
                kind,
                LLAMA32_1B,
                model_text="Llama-3.2-1B shape (random weights),",
                default_seqs=(2048,),
                tokens_per_step=16384,
                hf_config_dir="meta-llama/Llama-3.2-1B",
                records=LLAMA_RECORDS,
                lr=lr,
                min_lr=lr / 10,
                runs_on_cpu=False,
            )
            for kind, lr in (("lora", 1e-4), ("sft", 2e-5))
        ),
        *(
            _finetune(
                f"tiny_{kind}",
                kind,
                TINY_FT,
                model_text="a 2-layer Llama (hidden 64)",
                default_seqs=(256,),
                tokens_per_step=1024,
                records=TINY_RECORDS,
                lr=1e-3,
                min_lr=1e-4,
            )
            for kind in ("lora", "sft")
        ),
    )
}


def get_workload(name: str) -> Workload:
    if name not in WORKLOADS:
        raise PrimusUserError(
            f"unknown workload {name!r}", key="--workload", source="cli", hint=did_you_mean(name, WORKLOADS)
        )
    return WORKLOADS[name]


def flops_per_token(shape: ModelShape, seq: int, adapters_only: bool = False) -> float:
    """Training FLOPs per token (forward + backward), PaLM's formula (Chowdhery et al. 2022, App. B):
    6 N + 12 L h s, with N the parameters that take part in matrix multiplies (attention and MLP
    projections and the output layer; the embedding lookup excluded) and 12 L h s the attention
    scores and values over the full (non-causal) sequence. ``adapters_only`` (LoRA): no weight
    gradients for the frozen matrices, 4 N (the adapters' own FLOPs left out)."""
    s = shape
    kv = s.kv_heads * s.head_dim
    per_layer = s.hidden * (s.hidden + 2 * kv) + s.hidden * s.hidden + 3 * s.hidden * s.ffn
    matmul_params = s.layers * per_layer + s.hidden * s.vocab
    return (4.0 if adapters_only else 6.0) * matmul_params + 12.0 * s.layers * s.hidden * seq
