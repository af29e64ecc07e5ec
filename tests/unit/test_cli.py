"""The CLI as a user runs it: subprocesses, exit codes, messages, no tracebacks."""

import subprocess
import sys
import time

import pytest

from primus.cli.main import COMMANDS  # every command the entry point registers
from tests.conftest import REPO


def test_help_lists_subcommands(cli):
    out = cli("--help")
    assert out.returncode == 0
    for name in COMMANDS:
        assert name in out.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--help"],
        ["config", "show", "--help"],
        ["patches", "list", "--help"],
        ["backends", "list", "--help"],
        ["config", "--help"],
        ["generate", "--help"],
    ],
)
def test_every_command_has_help(cli, argv):
    out = cli(*argv)
    assert out.returncode == 0, out.stderr
    assert "usage:" in out.stdout


def test_module_entry_point_takes_train_arguments():
    out = subprocess.run(
        [sys.executable, "-m", "primus.cli.train", "--help"], cwd=REPO, capture_output=True, text=True
    )
    assert out.returncode == 0
    for flag in [
        "--config",
        "--recipe",
        "--data_path",
        "--convert_from_hf",
        "--hf_model_name_or_path",
        "--convert_to_hf",
        "--hf_export_dir",
        "--dry-run",
        "--framework",
    ]:
        assert flag in out.stdout


def test_import_primus_and_help_do_not_import_megatron_or_torch():
    code = (
        "import sys, primus, primus.cli.main, primus.backends; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('megatron', 'torch', 'transformers')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_help_is_fast():
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "primus", "--help"], cwd=REPO, capture_output=True, check=True)
    assert time.perf_counter() - start < 1.5  # one second on a quiet machine; CI boxes are noisy


def test_config_show_prints_sources(cli, tmp_path):
    (tmp_path / "base.yaml").write_text("train:\n  train_iters: 100\n  micro_batch_size: 1\n")
    (tmp_path / "x.yaml").write_text("extends: base.yaml\nmodel:\n  num_layers: 2\n")
    out = cli(
        "config", "show", "--config", "x.yaml", "train.train_iters=5", "--recipe", "llama3_8b", cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert "train_iters: 5  # cli" in out.stdout
    assert "micro_batch_size: 1  # base.yaml:3" in out.stdout
    assert "num_layers: 2  # x.yaml:3" in out.stdout
    assert "recipe: llama3_8b  # cli" in out.stdout
    assert "framework: megatron_bridge  # default" in out.stdout
    plain = cli("config", "show", "--config", "x.yaml", "--no-sources", cwd=tmp_path)
    assert "#" not in plain.stdout


@pytest.mark.parametrize(
    "argv,message",
    [
        (["config", "show", "--config", "missing.yaml"], "missing.yaml: config file does not exist"),
        (["config", "show", "tain.train_iters=1"], "tain (cli): unknown key; did you mean 'train'?"),
        (["config", "show", "--framework", "megatron"], "unknown framework 'megatron'"),
        (["config", "show", "device=gpu"], "device (cli): invalid value 'gpu'; valid: auto, cuda, cpu"),
        (["config", "show", "convert_to_hf=3"], "convert_to_hf (cli): expected bool, got int 3"),
        (["train", "--config", "missing.yaml"], "config file does not exist"),
        (["train", "recpe=llama3_8b", "--dry-run"], "did you mean 'recipe'?"),
        (["generate", "--hf", "m"], "--prompt: no prompt given; add --prompt"),
        (["generate", "--hf", "m", "--prompt", "a", "--top-k", "5", "--top-p", ".9"], "--top-k/--top-p"),
        (["generate", "--ckpt", "nope", "--prompt", "a"], "checkpoint directory nope does not exist"),
    ],
)
def test_user_errors_exit_2_with_one_line_and_no_traceback(cli, tmp_path, argv, message):
    out = cli(*argv, cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert out.stderr.startswith("primus: error: ")


def test_debug_shows_traceback(cli, tmp_path):
    out = cli("--debug", "config", "show", "--config", "missing.yaml", cwd=tmp_path)
    assert out.returncode != 0
    assert "Traceback" in out.stderr


def test_unrecognised_option_is_an_argparse_error(cli):
    out = cli("config", "show", "--bogus")
    assert out.returncode == 2
    assert "unrecognized arguments: --bogus" in out.stderr


def test_backends_and_patches_list(cli):
    out = cli("backends", "list")
    assert out.returncode == 0 and "megatron_bridge" in out.stdout
    out = cli("patches", "list", "--framework", "megatron_bridge")
    assert out.returncode == 0, out.stderr
    out = cli("patches", "list", "--framework", "nope")
    assert out.returncode == 2 and "unknown framework 'nope'" in out.stderr


def test_overrides_after_multi_value_option(cli):
    out = cli("config", "show", "--data_path", "0.7", "a", "0.3", "b", "train.train_iters=3")
    assert out.returncode == 0, out.stderr
    assert "data_path: 0.7 a 0.3 b  # cli" in out.stdout
    assert "train_iters: 3  # cli" in out.stdout
