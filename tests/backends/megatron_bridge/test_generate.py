"""`primus generate`: Megatron-Core's inference engine against `transformers`, and a fine-tuned
model answering through the real CLI.

In process (one model load per source): greedy continuations of a random tiny Llama, from its HF
directory and from its imported Megatron checkpoint, token-identical to `transformers` greedy
`generate()` (fp32, CPU, 40 new tokens, two prompts of different lengths in one batch); seeded
sampling repeats; a single prompt's streamed pieces make up its completion. End to end: the LoRA
run of ``conftest.finetune_runs`` answers its facts through `primus generate --ckpt RUN`.
"""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import run_cli

pytestmark = [pytest.mark.megatron, pytest.mark.slow]

NEW_TOKENS = 40
PROMPTS = ["ka lo mi ren", "what is the tor of vel zu pa qui sho dar"]


def _hf_greedy(hf_dir, token_lists: list[list[int]]) -> list[list[int]]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32).eval()
    model.generation_config.eos_token_id = None  # like --ignore-eos: always NEW_TOKENS tokens
    outs = []
    for ids in token_lists:
        with torch.no_grad():
            out = model.generate(
                torch.tensor([ids]),
                max_new_tokens=NEW_TOKENS,
                do_sample=False,
                pad_token_id=model.config.pad_token_id,
            )
        outs.append(out[0, len(ids) :].tolist())
    return outs


@pytest.fixture(scope="module")
def generations(finetune_base, imported_base):
    """Greedy, sampled and streamed generations of the base model (HF dir and checkpoint)."""
    from primus.cli.common import backend
    from primus.core.capabilities import GenerationParams

    greedy = GenerationParams(max_new_tokens=NEW_TOKENS, stop_at_eos=False)
    sampled = GenerationParams(max_new_tokens=12, temperature=0.9, top_k=20, seed=5, stop_at_eos=False)
    results: dict = {}
    inference = backend().inference()
    for name, source in (("hf", {"hf": str(finetune_base.hf)}), ("ckpt", {"ckpt": str(imported_base[0])})):
        with inference.open_model(**source, device="cpu") as model:
            tokens = [list(model.tokenizer(p).input_ids) for p in PROMPTS]
            results["prompt_tokens"] = tokens
            results[name] = [c.tokens for c in model.generate(tokens, greedy)]
            if name == "hf":
                pieces: list[str] = []
                streamed = model.generate(
                    tokens[:1], greedy, on_text=lambda _, text, out=pieces: out.append(text)
                )
                results["streamed"] = (pieces, streamed[0].text, streamed[0].tokens)
                results["sampled"] = [model.generate(tokens[:1], sampled)[0].tokens for _ in range(2)]
    results["transformers"] = _hf_greedy(finetune_base.hf, results["prompt_tokens"])
    return results


@pytest.mark.parametrize("source", ["hf", "ckpt"])
def test_greedy_is_token_identical_to_transformers(generations, source):
    assert [len(t) for t in generations[source]] == [NEW_TOKENS, NEW_TOKENS]
    assert generations[source] == generations["transformers"]


def test_seeded_sampling_repeats_and_is_not_greedy(generations):
    first, second = generations["sampled"]
    assert first == second
    assert first != generations["hf"][0][: len(first)]


def test_single_prompt_streams_its_completion(generations):
    pieces, text, tokens = generations["streamed"]
    assert len(pieces) > 1
    assert "".join(pieces).strip() == text.strip()
    assert tokens == generations["hf"][0]


def test_lora_run_answers_its_facts_through_the_cli(finetune_runs, tmp_path):
    """`primus generate --ckpt RUN` (adapters on their base) answers the trained chat prompts."""
    run = finetune_runs.lora
    prompts = tmp_path / "questions.jsonl"
    prompts.write_text(
        "".join(json.dumps({"messages": [{"role": "user", "content": f.question}]}) + "\n" for f in run.facts)
    )
    out_file = tmp_path / "answers.jsonl"
    out = run_cli(
        "generate", "--ckpt", str(run.run_dir), "--prompts", str(prompts), "--max-new-tokens", "12",
        "--batch-size", "25", "--output", str(out_file), cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    answers = [json.loads(line)["completion"].strip() for line in out_file.read_text().splitlines()]
    right = sum(a == f.answer for a, f in zip(answers, run.facts, strict=True))
    assert right >= 0.9 * len(run.facts), list(zip(answers, [f.answer for f in run.facts], strict=True))[:5]
    assert "Traceback" not in out.stderr
    assert "new tokens in" in out.stderr and "50 prompt(s)" in out.stderr
