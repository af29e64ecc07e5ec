from pathlib import Path

import pytest

from primus.core.config import ResolvedConfig, load_config
from primus.core.config.resolved import CLI, DEFAULT
from primus.core.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_leaf_sources_are_file_and_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "a.yaml", "train:\n  train_iters: 10\n  micro_batch_size: 2\nrecipe: llama3_8b\n")
    cfg = load_config("a.yaml")
    assert cfg.get("train.train_iters") == 10
    assert cfg.source_of("train.train_iters") == "a.yaml:2"
    assert cfg.source_of("train.micro_batch_size") == "a.yaml:3"
    assert cfg.source_of("recipe") == "a.yaml:4"
    assert cfg.source_of("framework") == DEFAULT


def test_extends_child_wins_and_parents_merge_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(
        tmp_path / "base/one.yaml", "train: {train_iters: 1, micro_batch_size: 1}\nmodel: {num_layers: 2}\n"
    )
    write(tmp_path / "base/two.yaml", "train: {train_iters: 2}\nmodel: {hidden_size: 64}\n")
    write(
        tmp_path / "exp/child.yaml",
        "extends: [../base/one.yaml, ../base/two.yaml]\nmodel:\n  num_layers: 4\n",
    )
    cfg = load_config("exp/child.yaml")
    assert cfg.get("train.train_iters") == 2
    assert cfg.source_of("train.train_iters") == "base/two.yaml:1"
    assert cfg.get("train.micro_batch_size") == 1
    assert cfg.get("model.num_layers") == 4
    assert cfg.source_of("model.num_layers") == "exp/child.yaml:3"
    assert cfg.get("model.hidden_size") == 64
    assert "extends" not in cfg.data


def test_extends_string_relative_to_including_file(tmp_path):
    write(tmp_path / "d/base.yaml", "train: {train_iters: 7}\n")
    write(tmp_path / "d/child.yaml", "extends: base.yaml\n")
    assert load_config(tmp_path / "d/child.yaml").get("train.train_iters") == 7


def test_extends_finds_a_shipped_config_by_name(tmp_path):
    (tmp_path / "my.yaml").write_text("extends: tiny_llama.yaml\nmodel:\n  num_layers: 3\n")
    cfg = load_config(tmp_path / "my.yaml")
    assert cfg.get("model.num_layers") == 3 and cfg.get("model.hidden_size") == 64
    assert "configs/tiny_llama.yaml:" in cfg.source_of("model.hidden_size")


def test_extends_cycle_is_reported_with_chain(tmp_path):
    write(tmp_path / "a.yaml", "extends: b.yaml\n")
    write(tmp_path / "b.yaml", "extends: a.yaml\n")
    with pytest.raises(ConfigError, match=r"extends cycle: .*a.yaml -> .*b.yaml -> .*a.yaml"):
        load_config(tmp_path / "a.yaml")


def test_extends_missing_parent_names_file_and_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "a.yaml", "train: {}\nextends: nope.yaml\n")
    with pytest.raises(ConfigError) as err:
        load_config("a.yaml")
    assert "extends (a.yaml:2): parent config 'nope.yaml' not found" in str(err.value)


def test_extends_wrong_type(tmp_path):
    write(tmp_path / "a.yaml", "extends: {x: 1}\n")
    with pytest.raises(ConfigError, match="must be a path or a list of paths"):
        load_config(tmp_path / "a.yaml")


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ConfigError, match="config file does not exist"):
        load_config(tmp_path / "none.yaml")
    with pytest.raises(ConfigError, match="config file is a directory"):
        load_config(tmp_path)


def test_yaml_syntax_error_has_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "bad.yaml", "train:\n  train_iters: 3\n  bad: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: YAML syntax error"):
        load_config("bad.yaml")


def test_top_level_must_be_mapping_and_keys_strings(tmp_path):
    write(tmp_path / "l.yaml", "- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level of a config file must be a mapping"):
        load_config(tmp_path / "l.yaml")
    write(tmp_path / "k.yaml", "1: a\n")
    with pytest.raises(ConfigError, match="keys must be strings"):
        load_config(tmp_path / "k.yaml")


def test_duplicate_key_is_an_error(tmp_path):
    write(tmp_path / "d.yaml", "train:\n  train_iters: 1\n  train_iters: 2\n")
    with pytest.raises(ConfigError, match="duplicate key 'train_iters'"):
        load_config(tmp_path / "d.yaml")


def test_unsafe_yaml_tags_are_refused(tmp_path):
    write(tmp_path / "evil.yaml", "x: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ConfigError, match="YAML error"):
        load_config(tmp_path / "evil.yaml")


def test_empty_file_gives_defaults(tmp_path):
    write(tmp_path / "e.yaml", "")
    cfg = load_config(tmp_path / "e.yaml")
    assert cfg.get("framework") == "megatron_bridge"


def test_interpolation_types_defaults_and_text(tmp_path):
    write(
        tmp_path / "i.yaml",
        "train:\n  train_iters: ${ITERS}\n  micro_batch_size: ${MBS:4}\nrun_dir: /runs/${USER_X}/x\nname: ${N:}\n",
    )
    cfg = load_config(tmp_path / "i.yaml", environ={"ITERS": "12", "USER_X": "ann"})
    assert cfg.get("train.train_iters") == 12
    assert cfg.get("train.micro_batch_size") == 4
    assert cfg.get("run_dir") == "/runs/ann/x"
    assert cfg.get("name") == ""


def test_interpolation_inside_lists(tmp_path):
    write(tmp_path / "i.yaml", "dataset:\n  paths:\n    - ${A}\n    - b\n")
    cfg = load_config(tmp_path / "i.yaml", environ={"A": "a"})
    assert cfg.get("dataset.paths") == ["a", "b"]


def test_unset_variables_are_all_reported(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "i.yaml", "train:\n  train_iters: ${NOPE_A}\nname: x-${NOPE_B}\n")
    with pytest.raises(ConfigError) as err:
        load_config("i.yaml", environ={})
    text = str(err.value)
    assert "2 problems" in text
    assert "train.train_iters (i.yaml:2): environment variable NOPE_A is not set" in text
    assert "name (i.yaml:3): environment variable NOPE_B is not set" in text


def test_overrides_set_add_delete(tmp_path):
    write(tmp_path / "o.yaml", "train: {train_iters: 1}\nmodel: {num_layers: 2, hidden_size: 8}\n")
    cfg = load_config(
        tmp_path / "o.yaml",
        overrides=["train.train_iters=5", "+model.my_key=[1, 2]", "~model.hidden_size", "optimizer.lr=3e-4"],
    )
    assert cfg.get("train.train_iters") == 5
    assert cfg.source_of("train.train_iters") == CLI
    assert cfg.get("model.my_key") == [1, 2]
    assert "model.my_key" in cfg.added
    assert not cfg.has("model.hidden_size")
    assert cfg.get("optimizer.lr") == 3e-4
    assert cfg.get("model.num_layers") == 2


def test_scientific_floats_in_files(tmp_path):
    write(tmp_path / "f.yaml", "optimizer:\n  lr: 3e-4\n  min_lr: 1.0e-5\n  name: e5\n")
    cfg = load_config(tmp_path / "f.yaml")
    assert cfg.get("optimizer") == {"lr": 3e-4, "min_lr": 1e-5, "name": "e5"}


def test_override_typing_follows_yaml(tmp_path):
    cfg = load_config(None, overrides=["a.b=true", "a.c=null", "a.d=text", "a.e=1.5", "a.f='7'"])
    assert cfg.get("a") == {"b": True, "c": None, "d": "text", "e": 1.5, "f": "7"}


def test_bad_overrides_are_collected(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides=["novalue", "~not.there", "bad key=1", "~"])
    text = str(err.value)
    assert "4 problems" in text
    assert "malformed override 'novalue'" in text
    assert "not.there (cli): cannot delete" in text


def test_flags_apply_before_overrides_and_skip_none():
    cfg = load_config(None, flags={"recipe": "a", "data_path": None}, overrides=["recipe=b"])
    assert cfg.get("recipe") == "b"
    assert cfg.get("data_path") is None
    assert cfg.source_of("data_path") == DEFAULT


def test_resolved_config_merge_and_yaml_render():
    base = ResolvedConfig()
    base.set("train", {"train_iters": 1, "eval": {"x": 1}}, "recipe:r")
    top = ResolvedConfig()
    top.set("train.train_iters", 9, "cli")
    base.merge(top)
    assert base.get("train.eval.x") == 1
    text = base.to_yaml()
    assert "train_iters: 9  # cli" in text
    assert "x: 1  # recipe:r" in text
    assert "train_iters: 9" in base.to_yaml(with_sources=False)


def test_set_replaces_scalar_parent_and_forgets_old_sources():
    cfg = ResolvedConfig()
    cfg.set("a", 1, "x")
    cfg.set("a.b", 2, "y")
    assert cfg.get("a") == {"b": 2}
    assert "a" not in cfg.sources
    assert cfg.source_of("a.b") == "y"


def test_get_missing_raises_keyerror_or_default():
    cfg = ResolvedConfig()
    with pytest.raises(KeyError):
        cfg.get("no.such")
    assert cfg.get("no.such", 3) == 3
