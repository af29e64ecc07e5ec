"""`primus eval` equals `transformers` and the harness's own `hf` model on a tiny random Llama (CPU, fp32).

One tiny HF model and its `primus convert import` checkpoint serve every test. Held-out loss:
the same tokens under the same mask as transformers' cross-entropy, within 1e-4, for chat records
(assistant tokens), prompt/completion records (completion tokens) and an indexed dataset (windows).
Harness: the local tasks in tasks/ (multiple choice, generate_until, rolling log-likelihood) on
the Primus model, from the HF directory and from the checkpoint, equal the harness's `hf` model
on the HF directory: accuracy exactly, each log-likelihood within 1e-4, each generation as text.
One `primus eval` subprocess runs both end to end.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.finetune_support import make_facts, make_tiny_hf_model, write_chat, write_prompt_completion

pytestmark = pytest.mark.megatron

TASKS_DIR = Path(__file__).resolve().parent / "tasks"
TASKS = ["tiny_mc", "tiny_gen", "tiny_ppl"]
SEQ_LEN = 16  # indexed-dataset windows: several, and a shorter last one


@dataclass
class Primus:
    """What the Primus model computed, from one source (HF directory or checkpoint)."""

    harness: dict
    losses: dict  # data kind -> (LossResult, sequences)


@dataclass
class Tiny:
    hf: Path
    ckpt: Path
    records: dict  # kind -> path
    prefix: Path
    facts: list
    from_hf: Primus
    from_ckpt: Primus


def _write_indexed(prefix: Path, tokenizer, texts: list[str]) -> list[list[int]]:
    import numpy as np
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    docs = [tokenizer.encode(text) + [tokenizer.eos_token_id] for text in texts]
    builder = IndexedDatasetBuilder(f"{prefix}.bin", dtype=np.int32)
    for doc in docs:
        builder.add_document(np.array(doc, dtype=np.int32), [len(doc)])
    builder.finalize(f"{prefix}.idx")
    return docs


def _primus(source: dict, records: dict, prefix: Path, with_loss: bool) -> Primus:
    from primus.cli.common import backend
    from primus.evaluation.data import resolve_held_out
    from primus.evaluation.harness import resolve_tasks, run_tasks
    from primus.evaluation.loss import evaluate_loss, windows

    inference = backend().inference()
    manager, names = resolve_tasks(",".join(TASKS), str(TASKS_DIR))
    losses = {}
    with inference.open_model(**source, device="cpu") as model:
        if with_loss:
            for kind, path in records.items():
                held = resolve_held_out(str(path))
                seqs = inference.sft_sequences(
                    model, held.records, chat=held.chat, loss_mode="assistant", chat_template=None, seq_len=64
                )
                losses[kind] = (evaluate_loss(model, seqs, batch_size=4), seqs)
            seqs = list(windows(inference.indexed_documents(str(prefix)), SEQ_LEN))
            losses["indexed"] = (evaluate_loss(model, seqs, batch_size=3), seqs)
        harness = run_tasks(model, manager, names, batch_size=4, log_samples=True)
    return Primus(harness, losses)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Tiny:
    from transformers import AutoTokenizer

    from primus.cli.common import backend

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    work = tmp_path_factory.mktemp("eval")
    facts = make_facts(16, seed=5)
    hf = make_tiny_hf_model(work / "hf", facts)
    backend().conversion().import_hf(
        str(hf), str(work / "ckpt"), device="cpu", tp=1, pp=1, trust_remote_code=False
    )
    records = {
        "chat": write_chat(facts[:6], work / "chat.jsonl"),
        "prompt_completion": write_prompt_completion(facts[6:12], work / "pc.jsonl"),
    }
    tokenizer = AutoTokenizer.from_pretrained(hf)
    prefix = work / "corpus_text_document"
    _write_indexed(prefix, tokenizer, [f"{f.question} {f.answer}" for f in facts[:5]])
    from_hf = _primus({"hf": str(hf)}, records, prefix, with_loss=True)
    from_ckpt = _primus({"ckpt": str(work / "ckpt")}, records, prefix, with_loss=False)
    return Tiny(hf, work / "ckpt", records, prefix, facts, from_hf, from_ckpt)


@pytest.fixture(scope="module")
def hf_reference(tiny) -> dict:
    """The same tasks through the harness's own `hf` model on the HF directory."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    from primus.evaluation.harness import resolve_tasks

    manager, names = resolve_tasks(",".join(TASKS), str(TASKS_DIR))
    model = HFLM(pretrained=str(tiny.hf), device="cpu", dtype="float32", batch_size=1)
    return lm_eval.simple_evaluate(
        model=model, tasks=names, task_manager=manager, log_samples=True, bootstrap_iters=0
    )


def _transformers_loss(hf: Path, sequences) -> tuple[float, int]:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32).eval()
    total, count = 0.0, 0
    for seq in sequences:
        with torch.no_grad():
            logits = model(torch.tensor([seq.inputs])).logits[0]
        nll = torch.nn.functional.cross_entropy(logits, torch.tensor(seq.labels), reduction="none")
        mask = torch.tensor(seq.mask, dtype=torch.float32)
        total += float((nll * mask).sum())
        count += int(mask.sum())
    return total / count, count


def test_held_out_loss_equals_transformers(tiny):
    for kind, (result, seqs) in tiny.from_hf.losses.items():
        loss, count = _transformers_loss(tiny.hf, seqs)
        assert result.tokens == count > 0, kind
        assert abs(result.loss - loss) < 1e-4, (kind, result.loss, loss)
        assert result.perplexity == pytest.approx(2.718281828459045**loss, rel=1e-3)
    assert tiny.from_hf.losses["chat"][0].sequences == 6


def test_sft_mask_is_the_answer_and_its_end_token(tiny):
    """The tokens scored are those fine-tuning trains on: the answer and <|endoftext|> only."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny.hf)
    for kind, facts in (("chat", tiny.facts[:6]), ("prompt_completion", tiny.facts[6:12])):
        _, seqs = tiny.from_hf.losses[kind]
        for seq, fact in zip(seqs, facts, strict=True):
            scored = [label for label, m in zip(seq.labels, seq.mask, strict=True) if m]
            assert tokenizer.decode(scored).strip() == f"{fact.answer}<|endoftext|>", kind


def test_indexed_windows_cover_every_token(tiny):
    from primus.cli.common import backend

    docs = [list(map(int, d)) for d in backend().inference().indexed_documents(str(tiny.prefix))]
    result, seqs = tiny.from_hf.losses["indexed"]
    assert len(docs) == 5
    assert result.tokens == sum(map(len, docs)) - 1  # every token but the first is predicted once
    assert all(len(s.inputs) == SEQ_LEN for s in seqs[:-1]) and 0 < len(seqs[-1].inputs) <= SEQ_LEN


def _responses(results: dict, task: str) -> list:
    return [sample["resps"] for sample in sorted(results["samples"][task], key=lambda s: s["doc_id"])]


@pytest.mark.parametrize("source", ["from_hf", "from_ckpt"])
def test_harness_tasks_equal_the_hf_model(tiny, hf_reference, source):
    ours = getattr(tiny, source).harness
    for metric in ("acc,none", "acc_norm,none"):
        assert ours["results"]["tiny_mc"][metric] == hf_reference["results"]["tiny_mc"][metric], metric
    mc_ours, mc_ref = _responses(ours, "tiny_mc"), _responses(hf_reference, "tiny_mc")
    assert len(mc_ours) == 12
    for a, b in zip(mc_ours, mc_ref, strict=True):  # per choice: [[loglikelihood, is_greedy]]
        assert [r[0][1] for r in a] == [r[0][1] for r in b]
        assert max(abs(x[0][0] - y[0][0]) for x, y in zip(a, b, strict=True)) < 1e-4
    assert _responses(ours, "tiny_gen") == _responses(hf_reference, "tiny_gen")
    assert any(r[0][0] for r in _responses(ours, "tiny_gen"))  # some text was generated
    rolling = zip(_responses(ours, "tiny_ppl"), _responses(hf_reference, "tiny_ppl"), strict=True)
    assert max(abs(a[0][0] - b[0][0]) for a, b in rolling) < 1e-4


def test_cli_end_to_end(tiny, hf_reference, tmp_path):
    out_json = tmp_path / "eval.json"
    out = run_cli(
        "eval", "--ckpt", str(tiny.ckpt), "--data", str(tiny.records["chat"]),
        "--tasks", "tiny_mc", "--include-path", str(TASKS_DIR), "--output", str(out_json),
        env={"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"},
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    expected_loss = tiny.from_hf.losses["chat"][0]
    line = re.search(r"loss (\S+)  perplexity (\S+)  \((\d+) tokens in 6 sequences", out.stdout)
    assert line, out.stdout
    assert abs(float(line[1]) - expected_loss.loss) < 1e-4 and int(line[3]) == expected_loss.tokens
    acc = hf_reference["results"]["tiny_mc"]["acc,none"]
    assert re.search(rf"\|tiny_mc\s*\|.*\|acc\s*\|.*\|{acc:.4f}\|", out.stdout), out.stdout
    report = json.loads(out_json.read_text())
    assert report["tasks"]["results"]["tiny_mc"]["acc,none"] == acc
    assert abs(report["held_out"]["loss"] - expected_loss.loss) < 1e-4
    assert "Traceback" not in out.stderr and "%|" not in out.stderr  # no progress bars on the console
