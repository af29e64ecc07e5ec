"""Fine-tuned models answer what they were taught: SFT and LoRA end to end on a CPU.

The runs (``conftest.finetune_runs``) go through the real CLI; the exported HF models are then
run with ``transformers`` ``generate()`` (greedy), the LoRA adapter through ``peft``.
"""

from __future__ import annotations

import json

import pytest
import torch

from tests.finetune_support import greedy_answers

pytestmark = [pytest.mark.megatron, pytest.mark.slow]
#: share of the trained prompts a fine-tuned model must answer exactly
TAUGHT = 0.9


def _trained_records(run_dir) -> list[dict]:
    """The records the run trained on (the staged training file: held-out ones excluded)."""
    lines = (run_dir / "sft_data" / "training.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _accuracy(answers: list[str], expected: list[str]) -> float:
    return sum(a == e for a, e in zip(answers, expected, strict=True)) / len(expected)


def _prompts_and_answers(tokenizer, records: list[dict]) -> tuple[list[str], list[str]]:
    """What the model is asked (chat: rendered with its template) and the taught answers."""
    if "messages" not in records[0]:
        return [r["prompt"] for r in records], [r["completion"] for r in records]
    turns = [[t for t in r["messages"] if t["role"] != "assistant"] for r in records]
    prompts = [tokenizer.apply_chat_template(t, add_generation_prompt=True, tokenize=False) for t in turns]
    return prompts, [r["messages"][-1]["content"] for r in records]


def test_sft_model_answers_what_it_was_taught(finetune_runs):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = finetune_runs.sft
    hf = run.run_dir / "hf"
    records = _trained_records(run.run_dir)
    tokenizer = AutoTokenizer.from_pretrained(hf)
    model = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32).eval()
    base = AutoModelForCausalLM.from_pretrained(finetune_runs.base_hf, dtype=torch.float32).eval()
    prompts, expected = _prompts_and_answers(tokenizer, records)
    assert _accuracy(greedy_answers(base, tokenizer, prompts), expected) < 0.1  # unknown before
    assert _accuracy(greedy_answers(model, tokenizer, prompts), expected) >= TAUGHT


def test_sft_validation_loss_falls_well_below_its_start(finetune_runs):
    run = finetune_runs.sft
    validation = [m["validation_loss"] for m in run.metrics() if m.get("validation_loss") is not None]
    assert len(validation) >= 3, run.metrics()[-3:]
    assert validation[-1] < 0.5 * validation[0], validation
    assert "validation at iter 100: loss" in run.stderr
    assert "records: 50 training, 10 validation" in run.stderr and "; packed;" in run.stderr


def test_lora_merged_model_and_adapter_answer_what_they_were_taught(finetune_runs):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = finetune_runs.lora
    base_dir = finetune_runs.sft.run_dir / "hf"
    records = _trained_records(run.run_dir)
    assert 40 <= len(records) < 50  # a validation share was held out
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    prompts, expected = _prompts_and_answers(tokenizer, records)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
    assert _accuracy(greedy_answers(base, tokenizer, prompts), expected) < 0.1  # unknown before
    merged = AutoModelForCausalLM.from_pretrained(run.run_dir / "hf", dtype=torch.float32).eval()
    assert _accuracy(greedy_answers(merged, tokenizer, prompts), expected) >= TAUGHT
    adapted = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32), run.run_dir / "hf_adapter"
    ).eval()
    assert _accuracy(greedy_answers(adapted, tokenizer, prompts), expected) >= TAUGHT


def test_lora_trains_the_adapters_only(finetune_runs):
    run = finetune_runs.lora
    summary = run.summary
    assert summary["frozen_weights_unchanged"] is True and summary["frozen_tensors"] > 0
    assert 0 < summary["trainable_parameters"] < 0.5 * 123_200  # the adapters, not the model
    assert "bitwise unchanged" in run.stderr
    assert "one record per sequence" in run.stderr and "lora: adapters of dim 16, alpha 32" in run.stderr


def test_lora_resumes_from_its_adapter_checkpoint(finetune_runs):
    run = finetune_runs.lora
    summary = run.summary
    assert (summary["start_iteration"], summary["last_iteration"]) == (100, 200), summary
    assert summary["resumes"] == [100]
    assert "iterations 101-200 of 200" in run.stderr  # the plan of the resumed run
    assert "checkpoint saved: iteration 100" in finetune_runs.lora_first_stderr


def test_sft_from_an_imported_megatron_checkpoint_starts_from_its_weights(
    finetune_runs, imported_base, tmp_path
):
    from tests.backends.megatron_bridge.conftest import COMMON, SFT_SHAPE
    from tests.conftest import run_cli

    ckpt, _ = imported_base  # `primus convert import` of finetune_runs.base_hf
    run_dir = tmp_path / "run"
    out = run_cli(
        "train", "--workload", "sft", "--hf_model_name_or_path", str(finetune_runs.base_hf),
        "--data_path", str(finetune_runs.sft_data), "--run_dir", str(run_dir),
        f"checkpoint.pretrained_checkpoint={ckpt}", "train.train_iters=1", "validation.eval_iters=0",
        *SFT_SHAPE, *COMMON,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"starting from {ckpt}" in out.stderr
    first = json.loads((run_dir / "summary.json").read_text())["first_loss"]
    # the same weights, records and order as the SFT run from the HF directory: the same first loss
    assert first == pytest.approx(finetune_runs.sft.summary["first_loss"], abs=1e-5)


def test_sft_run_writes_samples_that_learn_and_report_shows_them(finetune_runs, tmp_path):
    """``logger.sample_prompts`` / ``sample_interval=150``: greedy answers at iterations 150 and
    300 in samples.jsonl; by the end they are the taught answers; ``primus report`` lists them."""
    from tests.backends.megatron_bridge.conftest import SAMPLED
    from tests.conftest import run_cli

    run = finetune_runs.sft
    rows = [json.loads(line) for line in (run.run_dir / "samples.jsonl").read_text().splitlines()]
    questions = SAMPLED(run.facts)
    assert [r["iteration"] for r in rows] == [150] * 3 + [300] * 3
    assert [r["prompt"] for r in rows[-3:]] == questions
    answers = {f.question: f.answer for f in run.facts}
    right = sum(r["completion"].strip() == answers[r["prompt"]] for r in rows[-3:])
    assert right >= 2, rows[-3:]
    out = run_cli("report", str(run.run_dir), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (
        "samples" in out.stdout and repr(rows[-1]["completion"]) in (run.run_dir / "report.txt").read_text()
    )
