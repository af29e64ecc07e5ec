"""Loaders of the tiny local harness tasks: their JSONL files next to this one (no network, any cwd)."""

import json
from pathlib import Path

import datasets

HERE = Path(__file__).resolve().parent


def _load(name: str) -> datasets.DatasetDict:
    lines = (HERE / name).read_text(encoding="utf-8").splitlines()
    return datasets.DatasetDict({"test": datasets.Dataset.from_list([json.loads(line) for line in lines])})


def tiny_mc(**kwargs) -> datasets.DatasetDict:
    return _load("tiny_mc.jsonl")


def tiny_gen(**kwargs) -> datasets.DatasetDict:
    return _load("tiny_gen.jsonl")
