"""What every fine-tuning benchmark system starts from, built offline once per invocation.

- a tokenizer: byte-level BPE trained on the synthetic words (``primus.data.tokenizer``), with a
  chat template that marks assistant turns (``{% generation %}``), so Megatron-Bridge and the HF
  peers mask the same tokens;
- an HF model directory with random weights in the workload's shape (the shipped
  ``config.json`` for ``llama32_1b``: its 128256-row embedding stays, the tokenizer uses the
  first few thousand ids);
- chat records ``{"messages": [user, assistant]}`` of varied length (the user lists words, the
  assistant answers with them sorted: learnable), split into ``training.jsonl`` and
  ``validation.jsonl``; fixed seed, the same records for every system.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import random
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: assistant turns inside generation markers (``return_assistant_tokens_mask``)
CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'assistant' %}<|assistant|>{% generation %}{{ m['content'] }}<|endoftext|>{% endgeneration %}"
    "{% else %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SYLLABLES = ("ka", "lo", "mi", "ren", "tor", "vel", "zu", "pa", "qui", "sho", "dar", "ne", "fi", "gal", "bru")
DONE = "inputs.json"


@dataclass(frozen=True)
class RecordSpec:
    """How many records, how long (tokens, template included), and the tokenizer's size."""

    records: int
    validation_records: int
    min_tokens: int
    max_tokens: int
    tokenizer_vocab: int
    #: distinct words (Zipf-like frequencies)
    words: int
    seed: int = 1234


@dataclass(frozen=True)
class FinetuneInputs:
    model_dir: Path
    data_dir: Path
    #: tokens per training record (template included): mean, min, max; records, validation records
    stats: dict[str, Any]


def _words(rng: random.Random, count: int) -> list[str]:
    words: set[str] = set()
    while len(words) < count:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)  # a fixed order for the fixed seed; the rank (frequency) is random


@functools.cache
def _zipf(count: int) -> list[float]:
    return list(itertools.accumulate(1.0 / rank for rank in range(1, count + 1)))


def _record(
    rng: random.Random, words: list[str], target_tokens: int, tokens_per_word: float
) -> dict[str, Any]:
    # the words twice (question, answer), ~12 tokens of template and instruction
    n = max(1, round((target_tokens - 12) / (2 * tokens_per_word)))
    chosen = rng.choices(words, cum_weights=_zipf(len(words)), k=n)
    user = "Sort these words: " + " ".join(chosen)
    return {
        "messages": [
            {"role": "user", "content": user},
            {"role": "assistant", "content": " ".join(sorted(chosen))},
        ]
    }


def build_finetune_inputs(hf_config: dict[str, Any], spec: RecordSpec, root: Path) -> FinetuneInputs:
    """Tokenizer, random-weight HF model and records under ``root`` (reused when already there)."""
    done = root / DONE
    wanted = {"spec": asdict(spec), "hf_config": hf_config}
    if done.is_file():
        saved = json.loads(done.read_text())
        if saved.get("wanted") == wanted:
            return FinetuneInputs(root / "hf", root / "data", saved["stats"])
    rng = random.Random(spec.seed)
    words = _words(rng, spec.words)
    rng.shuffle(words)
    tokenizer = _tokenizer(root / "hf", words, spec.tokenizer_vocab, rng)
    sample = _record(rng, words, 1000, 1.0)
    per_word = len(_ids(tokenizer, sample)) / (2 * len(sample["messages"][1]["content"].split()))
    records = [
        _record(rng, words, rng.randint(spec.min_tokens, spec.max_tokens), per_word)
        for _ in range(spec.records + spec.validation_records)
    ]
    lengths = [len(_ids(tokenizer, r)) for r in records[: spec.records]]
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    for name, part in (
        ("training.jsonl", records[: spec.records]),
        ("validation.jsonl", records[spec.records :]),
    ):
        (data / name).write_text("".join(json.dumps(r) + "\n" for r in part))
    _random_model(root / "hf", hf_config, tokenizer, spec.seed)
    stats = {
        "records": spec.records,
        "validation_records": spec.validation_records,
        "tokens_mean": statistics.fmean(lengths),
        "tokens_min": min(lengths),
        "tokens_max": max(lengths),
        "tokenizer_size": len(tokenizer),
        "model_vocab": hf_config["vocab_size"],
    }
    done.write_text(json.dumps({"wanted": wanted, "stats": stats}, indent=1) + "\n")
    logger.info(
        "fine-tuning inputs in %s: %d records, %.0f tokens mean (%d-%d)",
        root,
        spec.records,
        stats["tokens_mean"],
        stats["tokens_min"],
        stats["tokens_max"],
    )
    return FinetuneInputs(root / "hf", data, stats)


def _ids(tokenizer: Any, record: dict[str, Any]) -> list[int]:
    out = tokenizer.apply_chat_template(record["messages"], tokenize=True, return_dict=True)
    return list(out["input_ids"])


def _tokenizer(out: Path, words: list[str], vocab: int, rng: random.Random) -> Any:
    from transformers import AutoTokenizer

    from primus.data.tokenizer import train_bpe_tokenizer

    texts = [" ".join(rng.sample(words, min(64, len(words)))) for _ in range(4 * len(words) // 64 + 1)]
    texts += ["Sort these words: <|user|> <|assistant|>"] * 10
    train_bpe_tokenizer(texts, vocab, out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(out)
    return tokenizer


def _random_model(out: Path, hf_config: dict[str, Any], tokenizer: Any, seed: int) -> None:
    """The workload's shape with random weights (bf16 on disk), special ids from the tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    fields = {k: v for k, v in hf_config.items() if k not in ("architectures", "transformers_version")}
    end = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    pad = tokenizer.convert_tokens_to_ids("<|pad|>")
    config = LlamaConfig(**{**fields, "bos_token_id": end, "eos_token_id": end, "pad_token_id": pad})
    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = LlamaForCausalLM(config)
    model.to(torch.bfloat16).save_pretrained(out)


def main(argv: list[str] | None = None) -> None:
    """``python -m primus.bench.finetune_data --config CFG.json --spec SPEC.json --out DIR``: build
    (or reuse) the inputs in their own process (the runner stays free of CUDA); prints the stats."""
    import argparse

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--config", type=Path, required=True, help="HF config.json fields")
    p.add_argument("--spec", type=Path, required=True, help="RecordSpec fields (JSON)")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    spec = RecordSpec(**json.loads(a.spec.read_text()))
    inputs = build_finetune_inputs(json.loads(a.config.read_text()), spec, a.out)
    print(json.dumps(inputs.stats))


if __name__ == "__main__":
    main()
