"""What a user must be able to trust: a refused run writes nothing, a small corpus trains, an
earlier run is never overwritten, a resume of a shrunk recipe continues its own LR schedule."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli

pytestmark = [pytest.mark.megatron, pytest.mark.slow]
TINY = str(REPO / "primus" / "configs" / "tiny_llama.yaml")


def error_text(stderr: str) -> str:
    """The `primus: error:` message and the lines that belong to it."""
    assert "primus: error:" in stderr, stderr[-3000:]
    return stderr[stderr.index("primus: error:") :]


def metrics(run_dir: Path) -> dict[int, dict]:
    rows = map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
    return {row["iteration"]: row for row in rows}


def test_zero_model_geometry_is_refused_before_anything_is_written(tmp_path):
    config = tmp_path / "zero.yaml"
    config.write_text(
        "model:\n  num_layers: 0\n  hidden_size: 0\n  num_attention_heads: 4\n  seq_length: 64\n"
    )
    run_dir = tmp_path / "run"
    out = run_cli("train", "--config", str(config), "--run_dir", str(run_dir), "--dry-run", cwd=tmp_path)
    assert out.returncode == 2, out.stderr[-3000:]
    error = error_text(out.stderr)
    assert "model.num_layers" in error and "model.hidden_size" in error
    assert "Traceback" not in out.stderr
    assert not run_dir.exists() and not (tmp_path / "runs").exists()


# -- a corpus too small for Megatron's default split ----------------------------------------
@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    """167 short documents of random words, a 512-token BPE trained on them."""
    root = tmp_path_factory.mktemp("small")
    rng = random.Random(0)
    words = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 8))) for _ in range(300)]
    docs = [" ".join(rng.choices(words, k=rng.randint(20, 60))) + "." for _ in range(167)]
    (root / "small.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    prefix = root / "out" / "small"
    out = run_cli(
        "data", "prepare", "--input", str(root / "small.jsonl"), "--train-tokenizer", "512",
        "--output-prefix", str(prefix), cwd=root, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    tokenizer = [
        "tokenizer.tokenizer_type=HuggingFaceTokenizer",
        f"tokenizer.tokenizer_model={prefix}_tokenizer",
    ]
    return root, ["--config", TINY, "--data_path", str(prefix), *tokenizer]


def test_a_chosen_split_that_leaves_validation_empty_is_refused(small_corpus, tmp_path):
    _, data = small_corpus
    run_dir = tmp_path / "run"
    out = run_cli(
        "train", "--run_dir", str(run_dir), "--dry-run", *data, "validation.eval_iters=2",
        "validation.eval_interval=10", "dataset.split=9999,8,2", cwd=tmp_path, timeout=240,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr[-3000:]
    error = error_text(out.stderr)
    assert "dataset.split" in error and "validation split" in error
    assert re.search(r"dataset\.split=\d+,\d+,\d+", error), error
    assert not run_dir.exists()


def test_a_small_corpus_trains_and_validates_on_a_derived_split(small_corpus, tmp_path):
    _, data = small_corpus
    run_dir = tmp_path / "run"
    # Megatron loops forever drawing samples from an empty split: the timeout fails the old code
    out = run_cli(
        "train", "--run_dir", str(run_dir), *data, "train.train_iters=4", "validation.eval_interval=2",
        "validation.eval_iters=1", "checkpoint.save_interval=4", cwd=tmp_path, timeout=240,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    config = (run_dir / "config.yaml").read_text()
    assert re.search(r"^\s*split: \d+,\d+,\d+  # derived:", config, re.M), config
    rows = metrics(run_dir)
    assert sorted(rows) == [1, 2, 3, 4]
    assert "validation_loss" in rows[2] and "validation_loss" in rows[4]


# -- an earlier run is never overwritten ----------------------------------------------------
def test_an_earlier_run_is_refused_then_moved_aside_with_start_over(tmp_path):
    run_dir = tmp_path / "run"
    first = run_cli("train", "--config", TINY, "--run_dir", str(run_dir), cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    tracker = run_dir / "checkpoints" / "latest_checkpointed_iteration.txt"
    assert tracker.read_text().strip() == "20"
    old_metrics = (run_dir / "metrics.jsonl").read_bytes()
    old_checkpoints = sorted(p.name for p in (run_dir / "checkpoints").iterdir())

    again = run_cli("train", "--config", TINY, "--run_dir", str(run_dir), cwd=tmp_path)
    assert again.returncode == 2, again.stderr[-3000:]
    errors = [line for line in again.stderr.splitlines() if line.startswith("primus: error:")]
    assert len(errors) == 1, again.stderr[-3000:]
    assert "has checkpoints up to iteration 20" in errors[0] and "--resume" in errors[0]
    assert tracker.read_text().strip() == "20"
    assert (run_dir / "metrics.jsonl").read_bytes() == old_metrics
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == old_checkpoints

    fresh = run_cli(
        "train", "--config", TINY, "--run_dir", str(run_dir), "--start_over",
        "train.train_iters=2", "checkpoint.save_interval=2", cwd=tmp_path,
    )  # fmt: skip
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    (aside,) = tmp_path.glob("run.old-*")
    assert (aside / "metrics.jsonl").read_bytes() == old_metrics
    assert (aside / "checkpoints" / "latest_checkpointed_iteration.txt").read_text().strip() == "20"
    assert sorted(p.name for p in (aside / "checkpoints").iterdir()) == old_checkpoints
    assert sorted(metrics(run_dir)) == [1, 2]
    assert tracker.read_text().strip() == "2"


# -- resume of a recipe shrunk on the command line ------------------------------------------
SHRUNK = [
    "--recipe", "llama32_1b", "model.num_layers=2", "model.hidden_size=64", "model.ffn_hidden_size=128",
    "model.num_attention_heads=4", "model.num_query_groups=2", "model.kv_channels=16",
    "tokenizer.vocab_size=512", "model.seq_length=64", "train.global_batch_size=4",
    "train.micro_batch_size=2", "scheduler.lr_warmup_iters=2", "checkpoint.save_interval=4",
    "logger.log_interval=1", "validation.eval_iters=0",
]  # fmt: skip


@pytest.mark.nightly  # long; `make test-nightly`
def test_shrunk_recipe_resumes_and_continues_its_lr_schedule(tmp_path):
    run_dir = tmp_path / "run"
    base = ["train", "--run_dir", str(run_dir), *SHRUNK]
    first = run_cli(*base, "train.train_iters=4", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "vocab_size: 512  # derived:tokenizer vocabulary" in (run_dir / "config.yaml").read_text()
    before = metrics(run_dir)
    assert sorted(before) == [1, 2, 3, 4] and before[4]["lr"] < before[2]["lr"]  # decayed to min_lr

    # the shape check looks at every model dimension, not only the vocabulary
    other = run_cli(*base, "--resume", "--dry-run", "train.train_iters=8", "model.num_layers=3", cwd=tmp_path)
    assert other.returncode == 2, other.stderr[-3000:]
    assert "model.num_layers" in error_text(other.stderr)

    resumed = run_cli(*base, "--resume", "train.train_iters=8", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "override_opt_param_scheduler" in resumed.stderr  # how to stretch the schedule instead
    after = metrics(run_dir)
    assert sorted(after) == list(range(1, 9))
    for it in range(1, 5):
        assert after[it]["lr"] == before[it]["lr"], it
    for it in range(5, 9):  # the checkpoint's schedule continues at min_lr, it does not restart
        assert after[it]["lr"] == pytest.approx(before[4]["lr"]), (it, after[it]["lr"])
