"""Hints for common mistakes: overrides without `=`, other trainers' key names, and which
patches apply on this machine."""

from __future__ import annotations

import pytest

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
