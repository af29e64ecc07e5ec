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
from primus.evaluation.loss import windows
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


def test_model_and_work_are_required(capsys, model_dir):
    assert "--ckpt/--hf: name one model" in _error(capsys, "--tasks", "tiny_mc")
    assert "--data/--tasks: nothing to evaluate" in _error(capsys, "--hf", str(model_dir))
    assert "--batch-size: must be at least 1, got 0" in _error(
        capsys, "--hf", str(model_dir), "--tasks", "tiny_mc", "--batch-size", "0"
    )


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
