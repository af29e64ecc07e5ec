"""Megatron-Bridge recipes by name, built without network access or a HuggingFace cache.

Most Megatron-Bridge 0.6.2 recipes call ``AutoBridge.from_hf_pretrained("<hub id>")`` only to
read the model's ``config.json``; offline that costs ~99 s of retries and then fails, and the
Llama repositories are gated even online. Primus ships those public ``config.json`` files
(``data/hf_configs``, sources in its ``SOURCES.md``) and an index of the recipes in scope, so:

* :func:`list_recipes` / :func:`resolve_recipe` read only ``index.json`` (no Megatron import:
  ``primus recipes list`` stays fast);
* :func:`build_recipe` calls the recipe function while :func:`shipped_hf_configs` answers its
  hub lookups from local directories.

Name rule: a recipe is found by its canonical 0.6.2 name
(``llama3_8b_pretrain_2gpu_h100_bf16_config``), by a legacy alias (``llama3_8b_pretrain_config``),
by either without the ``_config`` suffix, or by a *short name*: the legacy pretrain alias without
``_pretrain_config`` (``llama3_8b`` -> ``llama3_8b_pretrain_config``). Case and ``-``/``_`` do
not matter.

Precedence for a recipe's architecture: an explicit ``hf_config_dir`` > the shipped config.json
> a ``config.json`` already in the local HF cache (only for hub ids Primus does not ship). The
shipped file wins over a cached one so that a recipe builds the same everywhere; the hub is never
contacted.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from primus.core.errors import PrimusUserError, did_you_mean

logger = logging.getLogger(__name__)

HF_CONFIGS_DIR = Path(__file__).resolve().parent / "data" / "hf_configs"
INDEX_FILE = HF_CONFIGS_DIR / "index.json"
#: short name + SHORT_SUFFIX = the legacy pretrain alias it stands for
SHORT_SUFFIX = "_pretrain_config"


@dataclass(frozen=True)
class RecipeInfo:
    """One Megatron-Bridge recipe function and what it needs from the HuggingFace hub."""

    name: str  #: canonical function name in Megatron-Bridge 0.6.2
    family: str  #: llama, gpt, gemma, qwen, ministral3 (``megatron.bridge.recipes.<family>``)
    module: str  #: module that defines the function
    aliases: tuple[str, ...]  #: legacy names Megatron-Bridge still exports
    short: str | None  #: short name (see the module docstring), None when there is no pretrain alias
    hub_ids: tuple[str, ...]  #: hub ids whose config.json the recipe reads
    missing_hub_ids: tuple[str, ...]  #: the subset Primus does not ship
    offline_buildable: bool  #: builds from shipped files alone
    tokenizer_hub_ids: tuple[str, ...] = ()  #: tokenizers it names (loaded at train time, not here)
    note: str | None = None  #: why it is not buildable, when the index says so

    @property
    def names(self) -> tuple[str, ...]:
        """Every name that resolves to this recipe."""
        return (self.name, *self.aliases, *((self.short,) if self.short else ()))


@dataclass(frozen=True)
class _Catalog:
    recipes: dict[str, RecipeInfo]
    lookup: dict[str, str]  #: any accepted name -> canonical name
    shipped: dict[str, Path]  #: hub id -> directory holding its shipped config.json


def _normalize(name: str) -> str:
    return name.strip().lower().replace("-", "_")


@cache
def _catalog() -> _Catalog:
    """Load ``index.json`` once; a name claimed by two recipes is a bug in the shipped data."""
    index = json.loads(INDEX_FILE.read_text(encoding="utf-8"))
    shipped = {
        hub: (HF_CONFIGS_DIR / rel).parent
        for hub, rel in index["hub_ids"].items()
        if rel and (HF_CONFIGS_DIR / rel).is_file()
    }
    recipes: dict[str, RecipeInfo] = {}
    lookup: dict[str, str] = {}
    for name, entry in sorted(index["recipes"].items()):
        aliases = tuple(entry.get("aliases", ()))
        pretrain = [a for a in aliases if a.endswith(SHORT_SUFFIX)]
        hub_ids = tuple(entry.get("hub_ids", ()))
        missing = tuple(h for h in hub_ids if h not in shipped)
        info = RecipeInfo(
            name=name,
            family=entry["family"],
            module=entry["module"],
            aliases=aliases,
            short=pretrain[0].removesuffix(SHORT_SUFFIX) if len(pretrain) == 1 else None,
            hub_ids=hub_ids,
            missing_hub_ids=missing,
            offline_buildable=bool(entry.get("offline_buildable")) and not missing,
            tokenizer_hub_ids=tuple(entry.get("tokenizer_hub_ids", ())),
            note=entry.get("note"),
        )
        recipes[name] = info
        for alias in info.names:
            other = lookup.setdefault(alias, name)
            if other != name:
                raise RuntimeError(f"{INDEX_FILE}: recipe name {alias!r} is claimed by {other} and {name}")
    return _Catalog(recipes, lookup, shipped)


def families() -> list[str]:
    return sorted({info.family for info in _catalog().recipes.values()})


def list_recipes(family: str | None = None) -> list[RecipeInfo]:
    """Every recipe in scope (sorted by name), optionally of one family."""
    recipes = list(_catalog().recipes.values())
    if family is None:
        return recipes
    wanted = _normalize(family)
    if wanted not in families():
        raise PrimusUserError(
            f"unknown recipe family {family!r}", key="family", hint=did_you_mean(wanted, families())
        )
    return [info for info in recipes if info.family == wanted]


def resolve_recipe(name: str) -> RecipeInfo:
    """The recipe a user means by ``name`` (canonical, alias, without ``_config``, or short)."""
    catalog = _catalog()
    key = _normalize(name)
    for candidate in (key, key + "_config", key + SHORT_SUFFIX):
        if candidate in catalog.lookup:
            return catalog.recipes[catalog.lookup[candidate]]
    raise PrimusUserError(
        f"unknown recipe {name!r}",
        key="recipe",
        hint=did_you_mean(key, catalog.lookup) + " (see `primus recipes list`)",
    )


def hf_config_dirs(info: RecipeInfo, hf_config_dir: str | Path | None = None) -> dict[str, Path]:
    """Hub id -> local directory with its config.json, for every hub id the recipe reads.

    Raises a :class:`PrimusUserError` naming the missing config.json and how to provide it.
    """
    if not info.offline_buildable and not info.hub_ids:
        raise PrimusUserError(f"recipe {info.name!r} cannot be built: {info.note}", key="recipe")
    dirs: dict[str, Path] = {}
    if hf_config_dir is not None:
        local = Path(hf_config_dir).expanduser()
        if not (local / "config.json").is_file():
            raise PrimusUserError(
                f"{str(hf_config_dir)!r} is not a local directory with a config.json",
                key="hf_model_name_or_path",
                hint="give a downloaded HF model directory (only its config.json is read here)",
            )
        if len(info.hub_ids) != 1:
            raise PrimusUserError(
                f"recipe {info.name!r} reads {len(info.hub_ids)} HF configs; a single directory cannot replace them",
                key="hf_model_name_or_path",
            )
        return {info.hub_ids[0]: local}
    shipped = _catalog().shipped
    missing = []
    for hub in info.hub_ids:
        local = shipped.get(hub) or _cached_config_dir(hub)
        if local is None:
            missing.append(hub)
        else:
            dirs[hub] = local
    if missing:
        hub = missing[0]
        raise PrimusUserError(
            f"recipe {info.name!r} needs the config.json of {hub!r}, which Primus does not ship "
            "and the local HF cache does not hold",
            key="recipe",
            hint=f"pass --hf_model_name_or_path DIR (a local copy of {hub}), or fetch it once with "
            f"`hf download {hub} config.json` where the hub is reachable",
        )
    return dirs


def _cached_config_dir(hub_id: str) -> Path | None:
    """The directory of ``hub_id``'s config.json in the local HF cache, never the network."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(hub_id, "config.json")
    return Path(found).parent if isinstance(found, str) else None


def build_recipe(name: str, *, hf_config_dir: str | Path | None = None) -> Any:
    """Build the recipe's ``ConfigContainer`` from local HF configs (see :func:`hf_config_dirs`).

    ``hf_config_dir``: a local HF model directory whose config.json replaces the recipe's own
    (for recipes Primus ships no config for, or to build a recipe for a modified model).
    """
    info = resolve_recipe(name)
    dirs = hf_config_dirs(info, hf_config_dir)
    from primus.backends.megatron_bridge.bootstrap import prepare_imports

    prepare_imports()
    start = time.perf_counter()
    recipe_fn: Callable[[], Any] = getattr(importlib.import_module(info.module), info.name)
    imported = time.perf_counter()
    with shipped_hf_configs(dirs, tokenizer_ids=info.tokenizer_hub_ids):
        container = recipe_fn()
    logger.debug(
        "recipe %s built in %.3f s (import %.1f s) from %s",
        info.name,
        time.perf_counter() - imported,
        imported - start,
        {hub: str(path) for hub, path in dirs.items()} or "no HF config",
    )
    return container


class _SkippedTokenizer:
    """Stands in for a tokenizer a recipe loads only to grow ``vocab_size`` (Gemma 2/3 SFT/PEFT).

    Length 0 keeps the config.json vocab size; Megatron-Bridge checks the real tokenizer against
    it when training starts (``_validate_and_set_vocab_size``).
    """

    def __init__(self, hub_id: str) -> None:
        self.hub_id = hub_id

    def __len__(self) -> int:
        return 0

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"tokenizer {self.hub_id!r} is not loaded while a recipe is built ({name})")


@contextlib.contextmanager
def shipped_hf_configs(dirs: Mapping[str, Path], tokenizer_ids: Iterable[str] = ()) -> Iterator[None]:
    """Answer hub lookups for the ids in ``dirs`` from local directories, for this block only.

    Patched on the classes themselves (recipe modules bind ``AutoBridge`` / ``AutoConfig`` by
    ``from ... import``, i.e. the same class objects), restored on exit, also on error:

    * ``AutoBridge.from_hf_pretrained(id)`` -> ``AutoBridge.from_hf_config(local config)``: no
      lock file in ``~/.cache/huggingface``, no lazy model wrapper; ``hf_model_id`` and a pinned
      ``revision`` stay what the recipe asked for.
    * ``AutoConfig.from_pretrained(id)`` (Qwen3.5) -> the local config.json.
    * ``AutoTokenizer.from_pretrained(id)`` -> :class:`_SkippedTokenizer`.

    Other ids and local paths go to the original methods unchanged.
    """
    from megatron.bridge import AutoBridge
    from transformers import AutoConfig, AutoTokenizer

    original = {
        cls: cls.__dict__[attr]
        for cls, attr in (
            (AutoBridge, "from_hf_pretrained"),
            (AutoConfig, "from_pretrained"),
            (AutoTokenizer, "from_pretrained"),
        )
    }
    skipped = set(tokenizer_ids) | set(dirs)

    def config_from_pretrained(cls: type, path: Any, *args: Any, **kwargs: Any) -> Any:
        local = dirs.get(str(path))
        if local is None:
            return original[AutoConfig].__func__(cls, path, *args, **kwargs)
        kwargs.pop("revision", None)
        config = original[AutoConfig].__func__(cls, str(local), *args, **kwargs)
        config._name_or_path = str(path)  # what AutoBridge records as the provider's hf_model_id
        return config

    def bridge_from_pretrained(cls: type, path: Any, **kwargs: Any) -> Any:
        if str(path) not in dirs:
            return original[AutoBridge].__func__(cls, path, **kwargs)
        revision = kwargs.get("revision")
        bridge = cls.from_hf_config(config_from_pretrained(AutoConfig, path, **kwargs))
        bridge.hf_model_revision = revision if isinstance(revision, str) else None
        return bridge

    def tokenizer_from_pretrained(cls: type, path: Any, *args: Any, **kwargs: Any) -> Any:
        if str(path) in skipped:
            logger.info(
                "recipe build: tokenizer %s not loaded; model.vocab_size stays as in config.json", path
            )
            return _SkippedTokenizer(str(path))
        return original[AutoTokenizer].__func__(cls, path, *args, **kwargs)

    replacements = {
        AutoBridge: ("from_hf_pretrained", bridge_from_pretrained),
        AutoConfig: ("from_pretrained", config_from_pretrained),
        AutoTokenizer: ("from_pretrained", tokenizer_from_pretrained),
    }
    try:
        for cls, (attr, fn) in replacements.items():
            setattr(cls, attr, classmethod(fn))
        yield
    finally:
        for cls, (attr, _) in replacements.items():
            setattr(cls, attr, original[cls])
