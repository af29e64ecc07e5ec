"""`primus data prepare` -> Megatron indexed dataset -> `primus train` on it -> `primus report`."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.megatron, pytest.mark.slow]

TINY = REPO / "primus" / "configs" / "tiny_llama.yaml"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from tests.conftest import run_cli

    root = tmp_path_factory.mktemp("prep")
    texts = [
        (REPO / "README.md").read_text(),
        *[p.read_text() for p in sorted((REPO / "primus").rglob("*.py"))],
    ]
    data = root / "corpus.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts if t.strip()))
    prefix = root / "out" / "corpus"
    out = run_cli(
        "data", "prepare", "--input", str(data), "--train-tokenizer", "1024",
        "--output-prefix", str(prefix), "--workers", "2",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return prefix, [t for t in texts if t.strip()], out


def test_indexed_dataset_round_trips_with_eod(prepared):
    from megatron.core.datasets.indexed_dataset import IndexedDataset
    from transformers import AutoTokenizer

    prefix, texts, out = prepared
    assert "documents   " in out.stdout and "tokens      " in out.stdout and "time        " in out.stdout
    tokenizer = AutoTokenizer.from_pretrained(str(prefix) + "_tokenizer")
    assert len(tokenizer) == 1024 and tokenizer.eos_token == "<|endoftext|>"
    dataset = IndexedDataset(str(prefix))
    assert len(dataset) == len(texts)
    for i in (0, len(texts) // 2, len(texts) - 1):
        ids = dataset[i].tolist()
        assert ids[-1] == tokenizer.eos_token_id and tokenizer.eos_token_id not in ids[:-1]
        assert tokenizer.decode(ids[:-1]) == texts[i]
    summary = json.loads((prefix.parent / "corpus.json").read_text())
    assert summary["documents"] == len(texts) and summary["tokens"] == sum(dataset.sequence_lengths)
    assert not list(prefix.parent.glob("*.tmp"))


def test_train_on_prepared_data_with_its_tokenizer_then_report(prepared, tmp_path):
    from tests.conftest import run_cli

    prefix, _, _ = prepared
    run_dir = tmp_path / "run"
    out = run_cli(
        "train", "--config", str(TINY), "--run_dir", str(run_dir), "--data_path", str(prefix),
        "tokenizer.tokenizer_type=HuggingFaceTokenizer", f"tokenizer.tokenizer_model={prefix}_tokenizer",
        "train.train_iters=6", "checkpoint.save_interval=6", "logger.log_interval=2",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    config = (run_dir / "config.yaml").read_text()
    assert "split: 1,0,0  # derived:validation.eval_iters=0" in config
    assert "padded vocab (size: 1024)" in out.stdout + out.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["last_iteration"] == 6 and summary["last_loss"] < summary["first_loss"]

    report = run_cli("report", str(run_dir))
    assert report.returncode == 0, report.stderr[-3000:]
    assert "iterations   1 -> 6" in report.stdout and "throughput   median" in report.stdout
    assert (run_dir / "report.png").stat().st_size > 20_000
    assert "tensorboard" in (run_dir / "report.txt").read_text()
