"""`primus eval` refusals before any model loads, and the windows an indexed dataset is scored in.

No Megatron here: a refusal comes before the backend is asked for the model.
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path

import pytest

from primus.cli.eval_cmd import LM_EVAL_VERSION
from primus.cli.main import main
from primus.core.capabilities import LossSequence
from primus.core.errors import PrimusUserError
from primus.evaluation.loss import evaluate_loss, windows
from tests.conftest import REPO, run_cli

TASKS = Path(__file__).resolve().parent / "tasks"


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """Any directory: the refusals come before it is read as a model."""
    path = tmp_path / "hf"
    path.mkdir()
    return path


def _error(capsys, *argv: str) -> str:
    code = main(["eval", *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_missing_data_file_is_one_line_before_megatron(model_dir, tmp_path):
    out = run_cli("eval", "--hf", str(model_dir), "--data", str(tmp_path / "held_out.jsonl"))
    assert out.returncode == 2, out.stderr
    missing = tmp_path / "held_out.jsonl"
    expected = f"primus: error: --data: {missing} does not exist; give a .jsonl file of held-out records"
    assert out.stderr.strip() == expected, out.stderr


def test_missing_prefix_names_both_files(capsys, model_dir, tmp_path):
    err = _error(capsys, "--hf", str(model_dir), "--data", str(tmp_path / "corpus_text_document"))
    assert "--data:" in err and "corpus_text_document.bin / " in err and "primus data prepare" in err


def test_bad_record_is_named_file_line(capsys, model_dir, tmp_path):
    records = tmp_path / "held_out.jsonl"
    good = {"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}
    records.write_text(
        json.dumps(good) + "\n" + json.dumps({"messages": [{"role": "bot", "content": "x"}]}) + "\n"
    )
    err = _error(capsys, "--hf", str(model_dir), "--data", str(records))
    assert f"--data: {records}:2: role 'bot' is not one of" in err, err


def test_unknown_task_lists_the_closest(capsys, model_dir):
    err = _error(capsys, "--hf", str(model_dir), "--tasks", "tiny_mc,tiny_mq", "--include-path", str(TASKS))
    assert "--tasks: unknown task in the harness or" in err, err
    assert "'tiny_mq': did you mean tiny_mc" in err, err


def test_a_task_without_its_data_is_refused_before_the_model(capsys, model_dir, tmp_path):
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    yaml = (TASKS / "tiny_mc.yaml").read_text().replace("tiny_mc", "gone_mc")
    yaml = yaml.replace(
        "custom_dataset: !function tiny_tasks.gone_mc",
        "dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: " + str(tmp_path / "gone.jsonl"),
    )
    (tasks / "gone_mc.yaml").write_text(yaml)
    err = _error(capsys, "--hf", str(model_dir), "--tasks", "gone_mc", "--include-path", str(tasks))
    assert "--tasks: task 'gone_mc': its data cannot be loaded (" in err and "--include-path" in err, err


def test_model_and_work_are_required(capsys, model_dir):
    assert "--ckpt/--hf: name one model" in _error(capsys, "--tasks", "tiny_mc")
    assert "--data/--tasks: nothing to evaluate" in _error(capsys, "--hf", str(model_dir))
    assert "--ckpt: /nonexistent/run is not a directory" in _error(
        capsys, "--ckpt", "/nonexistent/run", "--tasks", "x"
    )
    assert "--batch-size: must be at least 1, got 0" in _error(
        capsys, "--hf", str(model_dir), "--tasks", "tiny_mc", "--batch-size", "0"
    )


def test_help_shows_examples_and_what_the_numbers_mean():
    out = run_cli("eval", "--help")
    assert out.returncode == 0, out.stderr
    for text in (
        "--ckpt RUN_OR_CKPT_DIR",
        "--tasks NAME[,NAME]",
        "--include-path DIR",
        "examples:",
        "perplexity = exp(loss)",
    ):
        assert text in out.stdout, text
    assert "lm_eval" not in out.stderr and "megatron" not in out.stderr


def test_windows_share_one_token_and_keep_the_rest():
    docs = [[1, 2, 3], [4, 5, 6, 7], [8]]
    got = [(w.inputs, w.labels, w.mask) for w in windows(docs, 3)]
    assert got == [
        ([1, 2, 3], [2, 3, 4], [1, 1, 1]),
        ([4, 5, 6], [5, 6, 7], [1, 1, 1]),
        ([7], [8], [1]),
    ]
    # every token but the first is predicted exactly once
    assert sorted(t for _, labels, _ in got for t in labels) == list(range(2, 9))
    assert list(windows([[1]], 4)) == []


def test_without_the_harness_tasks_name_the_install(capsys, model_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # as if lm-eval were not installed
    err = _error(capsys, "--hf", str(model_dir), "--tasks", "tiny_mc")
    assert "--tasks: lm-evaluation-harness is not installed; install it with: pip install -e '.[eval]'" in err


def test_the_eval_extra_is_pinned_the_same_everywhere():
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["eval"]
    lines = (REPO / "requirements" / "eval.txt").read_text().splitlines()
    pins = [re.sub(r"\s*#.*", "", line) for line in lines if line and not line.startswith("#")]
    assert extra == pins[:1] == [f"lm-eval=={LM_EVAL_VERSION}"]
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][\w.]*", pin) for pin in pins), pins
    setup = (REPO / "scripts" / "setup_venv.sh").read_text()
    assert "-r requirements/eval.txt" in setup and "requirements/eval.txt" in setup.split("START=")[0]
    from importlib.metadata import version

    assert version("lm-eval") == LM_EVAL_VERSION


class _Favours6:
    """A stand-in model: every position puts logit 5 on token 6 and 0 on the 7 others."""

    vocab_size = 8

    def logits(self, tokens):
        import torch

        out = torch.zeros(*tokens.shape, self.vocab_size)
        out[..., 6] = 5.0
        return out


def test_loss_is_token_weighted_over_the_mask():
    import math

    seqs = [LossSequence([1, 2, 3], [2, 3, 4], [0, 1, 1]), LossSequence([5], [6], [1])]
    result = evaluate_loss(_Favours6(), seqs, batch_size=2)
    norm = math.log(math.exp(5) + 7)
    expected = (2 * norm + (norm - 5)) / 3  # two missed tokens and one hit, each weighing the same
    assert result.tokens == 3 and result.sequences == 2
    assert abs(result.loss - expected) < 1e-6 and result.perplexity == pytest.approx(
        math.exp(expected), rel=1e-5
    )
    with pytest.raises(PrimusUserError, match="token id 9 is outside the model's vocabulary"):
        evaluate_loss(_Favours6(), [LossSequence([1], [9], [1])])
    with pytest.raises(PrimusUserError, match="no token to score"):
        evaluate_loss(_Favours6(), [LossSequence([1], [2], [0])])
