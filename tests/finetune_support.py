"""Fine-tuning test material, built offline: made-up facts, a tokenizer, a tiny HF Llama.

The facts are question -> answer pairs no model knows before training (invented names), so a
model that answers them after fine-tuning has learnt them from the records.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from primus.bench.finetune_data import CHAT_TEMPLATE  # assistant turns in generation markers

SYLLABLES = ("ka", "lo", "mi", "ren", "tor", "vel", "zu", "pa", "qui", "sho", "dar", "ne", "fi", "gal")


@dataclass(frozen=True)
class Fact:
    question: str
    answer: str


def _word(rng: random.Random, parts: int) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(parts)).capitalize()


def make_facts(n: int = 50, seed: int = 7) -> list[Fact]:
    """``n`` invented facts with distinct questions, e.g. 'Who guards Kalomi?' -> 'Renvel'."""
    rng = random.Random(seed)
    verbs = ("guards", "rules", "founded", "painted", "named")
    facts, seen = [], set()
    while len(facts) < n:
        place = _word(rng, 3)
        question = f"Who {rng.choice(verbs)} {place}?"
        if question in seen:
            continue
        seen.add(question)
        facts.append(Fact(question, _word(rng, 2)))
    return facts


def write_prompt_completion(facts: list[Fact], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as out:
        for f in facts:
            out.write(json.dumps({"prompt": f.question, "completion": f.answer}) + "\n")
    return path


def write_chat(facts: list[Fact], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as out:
        for f in facts:
            turns = [{"role": "user", "content": f.question}, {"role": "assistant", "content": f.answer}]
            out.write(json.dumps({"messages": turns}) + "\n")
    return path


def make_tiny_hf_model(
    out: Path, facts: list[Fact], *, hidden: int = 64, layers: int = 2, chat_template: bool = True
) -> Path:
    """A random tiny Llama with a BPE tokenizer trained on the facts (HF directory)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from primus.data.tokenizer import train_bpe_tokenizer

    texts = [f"{f.question} {f.answer}" for f in facts] * 4
    train_bpe_tokenizer(texts, 384, out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(out)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|pad|>"),
        tie_word_embeddings=False,
    )
    LlamaForCausalLM(config).save_pretrained(out)
    return out


def greedy_answers(model, tokenizer, prompts: list[str], max_new_tokens: int = 8) -> list[str]:
    """``transformers`` greedy generation, the answer text only (up to end of text)."""
    import torch

    answers = []
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        with torch.no_grad():
            out = model.generate(
                ids,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        answers.append(tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip())
    return answers
