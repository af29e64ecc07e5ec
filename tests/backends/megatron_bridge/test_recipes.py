"""Megatron-Bridge recipes: names, offline builds of every advertised recipe, and the CLI.

The builds run for real (no mocks) in one subprocess with no network, an empty ``HF_HOME`` and
an empty ``HOME``: importing Megatron-Bridge takes ~10 s, each build a fraction of a second.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from primus.backends.megatron_bridge import recipes
from primus.core.errors import PrimusUserError
from tests.conftest import REPO

FAMILIES = ["gemma", "gpt", "llama", "ministral3", "qwen"]


# -- names (index only: no Megatron import) ---------------------------------------------------
@pytest.mark.parametrize(
    "name",
    [
        "llama3_8b_pretrain_2gpu_h100_bf16_config",  # canonical
        "llama3_8b_pretrain_2gpu_h100_bf16",  # canonical without _config
        "llama3_8b_pretrain_config",  # legacy alias
        "llama3_8b_pretrain",  # alias without _config
        "llama3_8b",  # short name
        " LLAMA3-8B ",  # case, dashes and blanks do not matter
    ],
)
def test_resolve_accepts_canonical_alias_and_short_names(name):
    info = recipes.resolve_recipe(name)
    assert info.name == "llama3_8b_pretrain_2gpu_h100_bf16_config"
    assert info.short == "llama3_8b"
    assert info.hub_ids == ("meta-llama/Meta-Llama-3-8B",)


def test_short_name_is_the_pretrain_alias_without_its_suffix():
    assert recipes.resolve_recipe("llama3_8b_16k").name == "llama3_8b_pretrain_16gpu_h100_bf16_16k_config"
    assert recipes.resolve_recipe("qwen3_30b_a3b").name == "qwen3_30b_a3b_pretrain_16gpu_h100_bf16_config"
    assert recipes.resolve_recipe("gemma2_2b_sft").name == "gemma2_2b_sft_1gpu_h100_bf16_config"
    for info in recipes.list_recipes():
        if info.short:
            assert f"{info.short}_pretrain_config" in info.aliases
            assert recipes.resolve_recipe(info.short) is info


def test_unknown_recipe_suggests_close_names():
    with pytest.raises(PrimusUserError) as err:
        recipes.resolve_recipe("llama3_8bb")
    text = str(err.value)
    assert "unknown recipe 'llama3_8bb'" in text
    assert "did you mean 'llama3_8b'" in text
    assert "primus recipes list" in text
    assert err.value.problems[0].key == "recipe"


def test_list_filters_by_family_and_rejects_unknown_families():
    assert recipes.families() == FAMILIES
    everything = recipes.list_recipes()
    llama = recipes.list_recipes("llama")
    assert {i.family for i in llama} == {"llama"}
    assert sum(len(recipes.list_recipes(f)) for f in FAMILIES) == len(everything)
    assert "llama32_1b_pretrain_1gpu_h100_bf16_config" in {i.name for i in llama}
    assert [i.name for i in everything] == sorted(i.name for i in everything)
    with pytest.raises(PrimusUserError, match="unknown recipe family 'lama'.*did you mean 'llama'"):
        recipes.list_recipes("lama")


def test_index_matches_shipped_files():
    index = json.loads(recipes.INDEX_FILE.read_text())
    for hub, rel in index["hub_ids"].items():
        if rel:
            config = json.loads((recipes.HF_CONFIGS_DIR / rel).read_text())
            assert config.get("architectures"), hub
    for info in recipes.list_recipes():
        assert info.offline_buildable == index["recipes"][info.name]["offline_buildable"], info.name
        assert info.offline_buildable == (not info.missing_hub_ids and info.note is None), info.name


def test_recipe_without_shipped_config_says_what_is_missing(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    info = recipes.resolve_recipe("ministral3_8b_sft")
    assert not info.offline_buildable
    assert info.missing_hub_ids == ("mistralai/Ministral-3-8B-Instruct-2512",)
    with pytest.raises(PrimusUserError) as err:
        recipes.build_recipe("ministral3_8b_sft")  # raises before importing Megatron
    text = str(err.value)
    assert "needs the config.json of 'mistralai/Ministral-3-8B-Instruct-2512'" in text
    assert (
        "--hf_model_name_or_path" in text
        and "hf download mistralai/Ministral-3-8B-Instruct-2512 config.json" in text
    )
    with pytest.raises(PrimusUserError, match="cannot be built: raises NotImplementedError"):
        recipes.build_recipe("qwen3_next_80b_a3b_peft_config")
    with pytest.raises(PrimusUserError, match="not a local directory with a config.json"):
        recipes.hf_config_dirs(info, tmp_path)


def test_missing_config_is_taken_from_a_local_dir_or_the_hf_cache(monkeypatch, tmp_path):
    import huggingface_hub.constants

    shipped = recipes.HF_CONFIGS_DIR / "Qwen/Qwen2-0.5B/config.json"
    info = recipes.resolve_recipe("qwen35_text_9b")
    local = tmp_path / "my-model"
    local.mkdir()
    (local / "config.json").write_bytes(shipped.read_bytes())
    assert recipes.hf_config_dirs(info, local) == {"Qwen/Qwen3.5-9B-Base": local}

    snapshot = tmp_path / "hub/models--Qwen--Qwen3.5-9B-Base/snapshots/abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_bytes(shipped.read_bytes())
    (tmp_path / "hub/models--Qwen--Qwen3.5-9B-Base/refs").mkdir()
    (tmp_path / "hub/models--Qwen--Qwen3.5-9B-Base/refs/main").write_text("abc")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert recipes.hf_config_dirs(info) == {"Qwen/Qwen3.5-9B-Base": snapshot}


def test_listing_recipes_does_not_import_megatron():
    code = (
        "import sys; from primus.backends.megatron_bridge.recipes import list_recipes, resolve_recipe;"
        "list_recipes(); resolve_recipe('llama32_1b');"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('megatron', 'torch', 'transformers')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- every advertised recipe builds offline ---------------------------------------------------
BUILD_ALL = textwrap.dedent(
    """
    import importlib, inspect, json, pkgutil, socket, sys, time
    from pathlib import Path

    connects = []

    def no_network(self, address, *args):
        connects.append(str(address))
        raise OSError("network disabled by the test")

    socket.socket.connect = no_network
    from primus.backends.megatron_bridge import recipes
    from primus.backends.megatron_bridge.bootstrap import prepare_imports

    prepare_imports()
    import megatron.bridge.recipes  # noqa: F401  (imported once, outside the timings)
    from megatron.bridge import AutoBridge
    from transformers import AutoConfig, AutoTokenizer

    methods = [(AutoBridge, "from_hf_pretrained"), (AutoConfig, "from_pretrained"),
               (AutoTokenizer, "from_pretrained")]
    originals = [cls.__dict__[attr] for cls, attr in methods]
    results = []
    for info in recipes.list_recipes():
        if not info.offline_buildable:
            continue
        start = time.perf_counter()
        try:
            model = recipes.build_recipe(info.name).model
        except Exception as exc:
            results.append({"name": info.name, "error": f"{type(exc).__name__}: {exc}"})
            continue
        results.append({
            "name": info.name,
            "model_class": type(model).__name__,
            "num_layers": model.num_layers,
            "hidden_size": model.hidden_size,
            "num_moe_experts": getattr(model, "num_moe_experts", None),
            "vocab_size": model.vocab_size,
            "hf_model_id": getattr(model, "hf_model_id", None),
            "hf_model_revision": getattr(model, "hf_model_revision", None),
            "seconds": round(time.perf_counter() - start, 3),
        })

    # a recipe Primus ships no config for, from a user's directory
    user_dir = Path(sys.argv[1])
    model = recipes.build_recipe("qwen25_500m", hf_config_dir=user_dir).model
    from_dir = {"num_layers": model.num_layers, "hf_model_id": model.hf_model_id}

    # the originals come back, also when the block fails
    try:
        with recipes.shipped_hf_configs({"x/y": user_dir}):
            raise KeyError("boom")
    except KeyError:
        pass
    restored = all(cls.__dict__[attr] is old for (cls, attr), old in zip(methods, originals))

    # every recipe function of the families in scope is in the index
    installed = set()
    for family in recipes.families():
        pkg = importlib.import_module(f"megatron.bridge.recipes.{family}")
        for mod in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            for name, fn in vars(importlib.import_module(mod.name)).items():
                if inspect.isfunction(fn) and fn.__name__ == name and fn.__module__ == mod.name:
                    params = inspect.signature(fn).parameters.values()
                    if name.endswith("_config") and all(p.default is not p.empty for p in params):
                        installed.add(name)
    indexed = {info.name for info in recipes.list_recipes()}
    print("RESULTS " + json.dumps({
        "results": results, "from_dir": from_dir, "restored": restored, "connects": connects,
        "not_indexed": sorted(installed - indexed), "not_installed": sorted(indexed - installed),
    }))
    """
)


@pytest.fixture(scope="module")
def offline_builds(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("offline")
    home, hf_home, user_dir = tmp / "home", tmp / "hf_home", tmp / "qwen25_500m"
    for path in (home, hf_home, user_dir):
        path.mkdir()
    (user_dir / "config.json").write_bytes(
        (recipes.HF_CONFIGS_DIR / "Qwen/Qwen2-0.5B/config.json").read_bytes()
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "PRIMUS_"))}
    env.update(
        HOME=str(home),
        HF_HOME=str(hf_home),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONPATH=str(REPO),
    )
    out = subprocess.run(
        [sys.executable, "-c", BUILD_ALL, str(user_dir)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULTS ")]
    assert out.returncode == 0 and lines, out.stderr[-4000:]
    data = json.loads(lines[-1].removeprefix("RESULTS "))
    data["home"], data["hf_home"] = home, hf_home
    return data


@pytest.mark.megatron
def test_every_offline_recipe_builds_without_network_or_hf_cache(offline_builds):
    results = offline_builds["results"]
    failed = {r["name"]: r["error"] for r in results if "error" in r}
    assert not failed
    assert {r["name"] for r in results} == {i.name for i in recipes.list_recipes() if i.offline_buildable}
    assert offline_builds["connects"] == []
    assert not any(offline_builds["hf_home"].iterdir())
    assert not (Path(offline_builds["home"]) / ".cache" / "huggingface").exists()  # no config lock files
    assert offline_builds["restored"]


@pytest.mark.megatron
def test_installed_recipes_of_the_families_in_scope_are_all_indexed(offline_builds):
    assert offline_builds["not_indexed"] == []
    assert offline_builds["not_installed"] == []


@pytest.mark.megatron
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("llama32_1b_pretrain_1gpu_h100_bf16_config", {"num_layers": 16, "hidden_size": 2048}),
        ("llama3_8b_pretrain_2gpu_h100_bf16_config", {"num_layers": 32, "hidden_size": 4096}),
        ("llama31_405b_pretrain_256gpu_h100_bf16_config", {"num_layers": 126, "hidden_size": 16384}),
        ("gpt3_175b_pretrain_32gpu_h100_bf16_config", {"num_layers": 96, "hidden_size": 12288}),
        ("gemma2_2b_pretrain_2gpu_h100_bf16_config", {"num_layers": 26, "hidden_size": 2304}),
        ("qwen3_30b_a3b_pretrain_8gpu_h100_bf16_config", {"num_layers": 48, "num_moe_experts": 128}),
        ("ministral3_3b_sft_1gpu_h100_bf16_config", {"num_layers": 26, "hidden_size": 3072}),
    ],
)
def test_known_architectures(offline_builds, name, expected):
    result = next(r for r in offline_builds["results"] if r["name"] == name)
    assert {key: result[key] for key in expected} == expected


@pytest.mark.megatron
def test_builds_keep_the_hub_identity(offline_builds):
    by_name = {r["name"]: r for r in offline_builds["results"]}
    assert by_name["llama32_1b_pretrain_1gpu_h100_bf16_config"]["hf_model_id"] == "meta-llama/Llama-3.2-1B"
    qwen3_8b = by_name["qwen3_8b_pretrain_4gpu_h100_bf16_config"]
    assert qwen3_8b["hf_model_id"] == "Qwen/Qwen3-8B"
    assert qwen3_8b["hf_model_revision"]  # the pinned revision the recipe asks for
    assert offline_builds["from_dir"] == {"num_layers": 24, "hf_model_id": "Qwen/Qwen2.5-0.5B"}


# -- CLI --------------------------------------------------------------------------------------
def test_cli_list_family(cli):
    out = cli("recipes", "list", "--family", "llama")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["NAME", "FAMILY", "SHORT", "HF", "CONFIG", "OFFLINE"]
    row = next(line for line in lines if line.startswith("llama32_1b_pretrain_1gpu_h100_bf16_config"))
    assert row.split() == [
        "llama32_1b_pretrain_1gpu_h100_bf16_config",
        "llama",
        "llama32_1b",
        "meta-llama/Llama-3.2-1B",
        "yes",
    ]
    assert not any(line.split()[1:2] == ["qwen"] for line in lines if line.strip())
    assert "32 recipes, 32 build offline" in out.stdout


def test_cli_unknown_recipe_is_a_user_error(cli):
    out = cli("recipes", "show", "llama3_8bb")
    assert out.returncode == 2
    assert "unknown recipe 'llama3_8bb'; did you mean 'llama3_8b'" in out.stderr
    assert not any(line.startswith("Traceback") for line in out.stderr.splitlines())


@pytest.mark.parametrize(
    "argv", [["recipes", "--help"], ["recipes", "list", "--help"], ["recipes", "show", "--help"]]
)
def test_cli_recipes_help(cli, argv):
    out = cli(*argv)
    assert out.returncode == 0, out.stderr
    assert "usage:" in out.stdout


@pytest.mark.megatron
def test_cli_show_prints_recipe_values_and_overrides_with_sources(cli, tmp_path):
    out = cli(
        "recipes",
        "show",
        "llama32_1b",
        "train.train_iters=5",
        "--full",
        env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert (
        lines[0]
        == "# recipe llama32_1b -> llama32_1b_pretrain_1gpu_h100_bf16_config (megatron.bridge.recipes.llama.h100.llama3)"
    )
    assert "  train_iters: 5  # cli" in lines
    assert "  num_layers: 16  # recipe:llama32_1b" in lines
    assert "  hidden_size: 2048  # recipe:llama32_1b" in lines
    assert {"model:", "train:", "optimizer:", "tokenizer:"} <= set(lines)

    summary = cli(
        "recipes",
        "show",
        "llama32_1b",
        "train.train_iters=5",
        env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)},
    )
    assert summary.returncode == 0, summary.stderr[-3000:]
    assert "16 layers, hidden 2048, 32 heads / 8 KV groups, FFN 8192" in summary.stdout
    assert "5 iterations x global batch 512" in summary.stdout and "add --full" in summary.stdout


@pytest.mark.megatron
def test_cli_show_reports_every_bad_override_at_once(cli, tmp_path):
    out = cli(
        "recipes",
        "show",
        "llama32_1b",
        "train.train_iterz=5",
        "model.num_layers=abc",
        env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)},
    )
    assert out.returncode == 2
    assert "2 problems" in out.stderr
    assert "train.train_iterz (cli): unknown key; did you mean 'train_iters'" in out.stderr
    assert "model.num_layers (cli): expected int, got str 'abc'" in out.stderr
    assert not any(line.startswith("Traceback") for line in out.stderr.splitlines())
