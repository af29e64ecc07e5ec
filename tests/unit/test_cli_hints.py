"""Hints for common mistakes: overrides without `=`, other trainers' key names, and which
patches apply on this machine."""

from __future__ import annotations

import pytest

from primus.core.config.aliases import KEY_ALIASES, alias_targets, unknown_key_hint
from primus.core.config.overrides import missing_equals


def test_missing_equals_pairs_a_dotted_key_with_its_value():
    assert missing_equals(["train.train_iters", "100"]) == [
        ("train.train_iters 100", "train.train_iters=100")
    ]
    assert missing_equals(["+model.foo", "3", "logger.x", "a.b=1"]) == [
        ("+model.foo 3", "+model.foo=3"),
        ("logger.x", "logger.x=VALUE"),
    ]
    assert missing_equals(["--bogus", "100", "train", "a.b=2", "~c.d"]) == []  # not a dotted key


@pytest.mark.parametrize(
    "argv,message",
    [
        (
            ["train", "--config", "x.yaml", "train.train_iters", "100"],
            "primus: error: 'train.train_iters 100': overrides are key=value (write train.train_iters=100)\n",
        ),
        (
            ["config", "show", "model.num_layers", "2", "train.train_iters=3"],
            "primus: error: 'model.num_layers 2': overrides are key=value (write model.num_layers=2)\n",
        ),
    ],
)
def test_override_without_equals_is_one_line_error(cli, tmp_path, argv, message):
    out = cli(*argv, cwd=tmp_path)
    assert out.returncode == 2 and out.stderr == message


def test_unknown_option_stays_an_argparse_error(cli):
    out = cli("config", "show", "--train.train_iters", "100")
    assert out.returncode == 2
    assert "unrecognized arguments: --train.train_iters 100" in out.stderr


def test_alias_hint_names_the_key_in_the_same_section():
    optimizer = ["lr", "min_lr", "weight_decay", "clip_grad", "adam_beta1"]
    assert alias_targets("learning_rate", optimizer) == ["lr"]
    assert alias_targets("Learning-Rate", optimizer) == ["lr"]
    assert unknown_key_hint("learning_rate", optimizer, "optimizer") == "did you mean 'optimizer.lr'?"
    assert unknown_key_hint("max_grad_norm", optimizer, "optimizer") == "did you mean 'optimizer.clip_grad'?"
    train = ["train_iters", "global_batch_size", "micro_batch_size"]
    assert unknown_key_hint("batch_size", train, "train") == (
        "did you mean 'train.global_batch_size' or 'train.micro_batch_size'?"
    )
    # an alias whose Megatron name lives in another section falls back to fuzzy matching
    assert unknown_key_hint("max_steps", optimizer, "optimizer") == "valid: " + ", ".join(sorted(optimizer))
    assert unknown_key_hint("lrr", optimizer, "optimizer") == "did you mean 'lr'?"
    assert all(isinstance(v, tuple) and v for v in KEY_ALIASES.values())


@pytest.mark.megatron
def test_dry_run_suggests_the_megatron_name_of_an_alias(cli):
    out = cli(
        "train", "--config", "primus/configs/tiny_llama.yaml", "--dry-run",
        "optimizer.learning_rate=1e-3", "train.max_steps=5", "model.n_layers=1",
    )  # fmt: skip
    assert out.returncode == 2, out.stdout + out.stderr
    assert "optimizer.learning_rate (cli): unknown key; did you mean 'optimizer.lr'?" in out.stderr
    assert "train.max_steps (cli): unknown key; did you mean 'train.train_iters'?" in out.stderr
    assert "model.n_layers (cli): unknown key; did you mean 'model.num_layers'?" in out.stderr
