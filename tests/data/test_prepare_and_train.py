"""`primus data prepare` -> Megatron indexed dataset -> `primus train` on it -> `primus report`."""

from __future__ import annotations

import json
import re
import shlex

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.megatron, pytest.mark.slow]


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
        assert ids[-1] == tokenizer.eos_token_id
        # inside a document only where its text spells the token (the README does)
        assert ids[:-1].count(tokenizer.eos_token_id) == texts[i].count(tokenizer.eos_token)
        assert tokenizer.decode(ids[:-1]) == texts[i]
    summary = json.loads((prefix.parent / "corpus.json").read_text())
    assert summary["documents"] == len(texts) and summary["tokens"] == sum(dataset.sequence_lengths)
    assert not list(prefix.parent.glob("*.tmp"))


def test_train_on_prepared_data_with_its_tokenizer_then_report(prepared, tmp_path):
    """The command `data prepare` prints trains as printed: no --config, the embedded tiny Llama."""
    from tests.conftest import run_cli

    prefix, _, out = prepared
    (printed,) = [line for line in out.stdout.splitlines() if line.startswith("train on it:")]
    command = shlex.split(printed.removeprefix("train on it:"))
    assert command[:2] == ["primus", "train"] and "--config" not in command and "--recipe" not in command
    assert f"tokenizer.tokenizer_model={prefix}_tokenizer" in command
    out = run_cli(*command[1:], cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = tmp_path / "runs" / prefix.name  # the printed --run_dir: named after the data
    config = (run_dir / "config.yaml").read_text()
    assert re.search(r"^  num_layers: 2  # .*tiny_llama\.yaml:\d+$", config, re.M), config
    assert "split: 1,0,0  # derived:validation.eval_iters=0" in config
    assert re.search(r"^  vocab_size: 1024  # derived:", config, re.M)  # the tokenizer's, not 256
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["last_iteration"] == 20 and summary["last_loss"] < summary["first_loss"]

    report = run_cli("report", str(run_dir))
    assert report.returncode == 0, report.stderr[-3000:]
    assert "iterations   1 -> 20" in report.stdout and "throughput   median" in report.stdout
    assert (run_dir / "report.png").stat().st_size > 20_000
    assert "tensorboard" in (run_dir / "report.txt").read_text()
