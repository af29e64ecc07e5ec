"""``logger.sample_*`` settings and the report's samples block (no Megatron import)."""

from __future__ import annotations

import json

import pytest

from primus.backends.megatron_bridge.training_samples import sample_settings
from primus.core.config.resolved import CLI, ResolvedConfig
from primus.report.run_report import samples_text


def user_config(**logger_keys) -> ResolvedConfig:
    cfg = ResolvedConfig()
    for key, value in logger_keys.items():
        cfg.set(f"logger.{key}", value, CLI)
    return cfg


def test_off_by_default_and_on_with_prompts_and_interval():
    assert sample_settings(user_config()) == (None, [])
    settings, problems = sample_settings(user_config(sample_prompts=["Hi"], sample_interval=50))
    assert problems == [] and settings.prompts == ["Hi"] and settings.interval == 50
    assert settings.max_new_tokens == 32


@pytest.mark.parametrize(
    "keys,message",
    [
        ({"sample_prompts": "Hi", "sample_interval": 5}, "logger.sample_prompts (cli): expected a list"),
        ({"sample_prompts": ["Hi", ""], "sample_interval": 5}, "non-empty strings"),
        (
            {"sample_prompts": ["Hi"]},
            "logger.sample_interval (cli): sample prompts are given but no interval",
        ),
        ({"sample_prompts": ["Hi"], "sample_interval": -1}, "logger.sample_interval (cli): expected a whole"),
        (
            {"sample_prompts": ["Hi"], "sample_interval": 5, "sample_max_new_tokens": 0},
            "sample_max_new_tokens",
        ),
    ],
)
def test_bad_settings_are_one_line_each(keys, message):
    settings, problems = sample_settings(user_config(**keys))
    assert settings is None
    assert len(problems) == 1 and message in str(problems[0])


def test_report_lists_the_last_sampled_iterations(tmp_path):
    assert samples_text(tmp_path) == ""
    rows = [{"iteration": i, "prompt": "Q", "completion": f"A{i}"} for i in (10, 20, 30)]
    (tmp_path / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"iteration": 4')
    text = samples_text(tmp_path)
    assert "iteration 20" in text and "'A30'" in text and "A10" not in text
