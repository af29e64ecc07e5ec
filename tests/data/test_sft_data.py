"""Fine-tuning data: checked before training (file:line, key) and staged for Bridge (fast: no Megatron)."""

from __future__ import annotations

import json
import os

import pytest

from primus.core.errors import PrimusUserError
from primus.data.sft_data import (
    chat_template_problem,
    inspect_sft_data,
    is_sft_data_path,
    stage_sft_data,
)


def chat(i: int) -> dict:
    return {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}


def pc(i: int) -> dict:
    return {"prompt": f"p{i}", "completion": f"c{i}"}


def write(path, records) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return str(path)


def error_of(data_path, source="cli") -> str:
    with pytest.raises(PrimusUserError) as info:
        inspect_sft_data(data_path, source=source)
    return str(info.value)


def test_both_formats_detected_and_counted(tmp_path):
    a = write(tmp_path / "chat.jsonl", [chat(i) for i in range(3)] + [""])  # blank line skipped
    data = inspect_sft_data(a, source="cli")
    assert (data.format, data.training_records, data.validation_records, data.validation) == (
        "chat",
        3,
        0,
        (),
    )
    b = write(tmp_path / "a.jsonl", [pc(i) for i in range(2)])
    c = write(tmp_path / "b.jsonl", [pc(i) for i in range(4)])
    v = write(tmp_path / "val.jsonl", [pc(9)])
    data = inspect_sft_data(f"{b} {c} {v}", source="cli")  # a space-separated string, as the key allows
    assert data.format == "prompt_completion"
    assert data.training == (tmp_path / "a.jsonl", tmp_path / "b.jsonl")
    assert data.validation == (tmp_path / "val.jsonl",)
    assert (data.training_records, data.validation_records) == (6, 1)
    assert inspect_sft_data([b, c, v], source=None) == data


def test_is_sft_data_path(tmp_path):
    (tmp_path / "d").mkdir()
    assert is_sft_data_path("a.jsonl") and is_sft_data_path(["x/a.jsonl", "b.jsonl"])
    assert is_sft_data_path(str(tmp_path / "d"))  # any directory: a prefix never is one
    assert not is_sft_data_path("data/corpus_text_document") and not is_sft_data_path("0.7 a 0.3 b")
    assert not is_sft_data_path(None) and not is_sft_data_path([])


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not a JSON object (a list)"),
        (
            '{"input": "x", "output": "y"}',
            "neither 'messages' (chat) nor 'prompt' and 'completion' (found keys: 'input', 'output')",
        ),
        ({"messages": []}, "messages must be a non-empty list of turns (key 'messages')"),
        ({"messages": "hi"}, "(key 'messages')"),
        ({"messages": [{"role": "user", "content": "q"}, "a"]}, "not a string (key 'messages[1]')"),
        (
            {"messages": [{"role": "user", "content": "q"}, {"role": "bot", "content": "a"}]},
            "role 'bot' is not one of system, user, assistant, tool (key 'messages[1].role')",
        ),
        ({"messages": [{"content": "q"}]}, "role missing is not one of"),
        (
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ["a"]}]},
            "content must be a string, not a list (key 'messages[1].content')",
        ),
        (
            {"messages": [{"role": "user"}]},
            "content must be a string, not missing (key 'messages[0].content')",
        ),
        (
            {"messages": [{"role": "user", "content": "q"}]},
            "no assistant turn (nothing to learn from) (key 'messages')",
        ),
        ({"prompt": "p"}, "no 'completion' (key 'completion')"),
        ({"prompt": 3, "completion": "c"}, "prompt must be a string, not a number (key 'prompt')"),
        ({"prompt": "p", "completion": " "}, "completion is empty (key 'completion')"),
    ],
)
def test_bad_record_is_reported_with_file_line_and_key(tmp_path, line, problem):
    path = write(tmp_path / "t.jsonl", [chat(0) if "messages" in str(line) else pc(0), line])
    text = error_of(path)
    assert f"data_path (cli): {path}:2: " in text and problem in text


def test_not_utf8_and_many_bad_records_listed_then_counted(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"prompt": "\xff", "completion": "c"}\n')
    assert f"{path}:1: not UTF-8 text" in error_of(str(path))
    write(path, [pc(0)] + [{"prompt": "p"}] * 25)
    text = error_of(str(path))
    assert text.startswith("11 problems:")  # 10 listed, then the count
    assert f"{path}:11: no 'completion'" in text and f"{path}:12:" not in text
    assert "... and 15 more bad records" in text


def test_mixing_formats_names_the_first_record_of_each(tmp_path):
    a = write(tmp_path / "a.jsonl", ["", chat(0), chat(1)])
    b = write(tmp_path / "b.jsonl", [chat(2), pc(0), pc(1)])
    text = error_of([a, b])
    assert f"chat (first at {a}:2) and prompt/completion (first at {b}:2)" in text
    assert "use one format in every file" in text


def test_no_records_missing_file_and_not_jsonl(tmp_path):
    empty = write(tmp_path / "e.jsonl", ["", "  "])
    assert f"no records in {empty}" in error_of(empty)
    val = write(tmp_path / "validation.jsonl", [""])
    assert "no records in validation file" in error_of([write(tmp_path / "t.jsonl", [pc(0)]), val])
    assert f"{tmp_path / 'missing.jsonl'} does not exist" in error_of(str(tmp_path / "missing.jsonl"))
    text = error_of([empty, "data/corpus_text_document"])
    assert "'data/corpus_text_document' is not a .jsonl file" in text and "indexed-dataset prefixes" in text
    assert "no training file" in error_of(write(tmp_path / "v" / "val.jsonl", [pc(0)]))
    one = write(tmp_path / "one.jsonl", [pc(0)])
    assert "one training record cannot be split" in error_of(one)
    assert "give a validation file (validation.jsonl) or more records" in error_of(one)


def test_directory_forms(tmp_path):
    write(tmp_path / "d" / "training.jsonl", [pc(i) for i in range(3)])
    write(tmp_path / "d" / "validation.jsonl", [pc(9)])
    data = inspect_sft_data(str(tmp_path / "d"), source="cli")
    assert data.training == (tmp_path / "d" / "training.jsonl",)
    assert data.validation == (tmp_path / "d" / "validation.jsonl",)
    write(tmp_path / "e" / "training.jsonl", [pc(i) for i in range(3)])
    write(tmp_path / "e" / "val.jsonl", [pc(9)])
    assert inspect_sft_data(str(tmp_path / "e"), source=None).validation == (tmp_path / "e" / "val.jsonl",)
    write(tmp_path / "f" / "train.jsonl", [pc(0)])
    (tmp_path / "f" / "notes").mkdir()
    text = error_of(str(tmp_path / "f"))
    assert f"directory {tmp_path / 'f'} holds no training.jsonl (it holds notes/, train.jsonl)" in text
    (tmp_path / "g").mkdir()
    assert "(it is empty)" in error_of(str(tmp_path / "g"))


def test_held_out_split(tmp_path):
    records = [pc(i) for i in range(40)]
    data = inspect_sft_data(write(tmp_path / "t.jsonl", records), source=None)
    staged = stage_sft_data(data, tmp_path / "run" / "sft")
    assert (staged.training_records, staged.validation_records, staged.held_out) == (38, 2, True)
    train = [json.loads(x) for x in (staged.root / "training.jsonl").read_text().splitlines()]
    val = [json.loads(x) for x in (staged.root / "validation.jsonl").read_text().splitlines()]
    assert len(train) == 38 and len(val) == 2
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in val}
    assert sorted(train + val, key=lambda r: int(r["prompt"][1:])) == records
    assert train == [r for r in records if r not in val]  # input order kept
    again = stage_sft_data(data, tmp_path / "again")
    assert (again.root / "validation.jsonl").read_text() == (staged.root / "validation.jsonl").read_text()
    other = stage_sft_data(data, tmp_path / "other", seed=7)
    assert (other.root / "validation.jsonl").read_text() != (staged.root / "validation.jsonl").read_text()
    # at least 1, at most n - 1
    two = inspect_sft_data(write(tmp_path / "two.jsonl", [pc(0), pc(1)]), source=None)
    assert stage_sft_data(two, tmp_path / "s2", validation_fraction=0.01).validation_records == 1
    assert stage_sft_data(two, tmp_path / "s3", validation_fraction=0.99).training_records == 1


def test_user_validation_file_and_normalised_output(tmp_path):
    rec = {"messages": [{"role": "user", "content": "héllo"}, {"role": "assistant", "content": "a"}], "id": 7}
    train = write(tmp_path / "in" / "training.jsonl", [json.dumps(rec, indent=None), "", chat(1)])
    write(tmp_path / "in" / "validation.jsonl", [chat(2)])
    staged = stage_sft_data(inspect_sft_data(str(tmp_path / "in"), source=None), tmp_path / "out")
    assert (staged.training_records, staged.validation_records, staged.held_out) == (2, 1, False)
    lines = (staged.root / "training.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0]) == {"messages": rec["messages"]} and "héllo" in lines[0]
    assert len(lines) == 2 and train != str(staged.root / "training.jsonl")
    lone = write(tmp_path / "lone.jsonl", ['{"prompt": "\\ud800", "completion": "c"}', pc(1)])
    staged = stage_sft_data(inspect_sft_data(lone, source=None), tmp_path / "lone")  # a lone surrogate
    text = (staged.root / "training.jsonl").read_text() + (staged.root / "validation.jsonl").read_text()
    assert {json.loads(x)["prompt"] for x in text.splitlines()} == {"\ud800", "p1"}
    with pytest.raises(PrimusUserError, match="it holds the input files"):
        stage_sft_data(inspect_sft_data(str(tmp_path / "in"), source=None), tmp_path / "in")


def test_staging_is_idempotent_and_a_change_removes_stale_caches(tmp_path):
    src = tmp_path / "t.jsonl"
    write(src, [pc(i) for i in range(20)])
    dest = tmp_path / "run" / "sft"
    stage_sft_data(inspect_sft_data(str(src), source=None), dest)
    training = dest / "training.jsonl"
    caches = [
        dest / f"{name}.jsonl.idx.{ext}" for name in ("training", "validation") for ext in ("npy", "info")
    ]
    for cache in caches:
        cache.write_text("cache")
    old = 1_000_000_000
    os.utime(training, (old, old))
    stage_sft_data(inspect_sft_data(str(src), source=None), dest)
    assert training.stat().st_mtime == old and all(c.exists() for c in caches)
    assert sorted(p.name for p in dest.iterdir() if p.name.startswith(".")) == []  # no temporary left
    first = int(json.loads(training.read_text().splitlines()[0])["prompt"][1:])
    write(src, [pc(99) if i == first else pc(i) for i in range(20)])  # a training record changed
    validation_text = (dest / "validation.jsonl").read_text()
    staged = stage_sft_data(inspect_sft_data(str(src), source=None), dest)
    assert staged.training_records == 19 and "p99" in training.read_text()
    assert training.stat().st_mtime != old and (dest / "validation.jsonl").read_text() == validation_text
    assert [c.exists() for c in caches] == [False, False, True, True]  # only training's caches were stale


def test_one_record_cannot_be_split_when_staging(tmp_path):
    from primus.data.sft_data import SFTData

    data = SFTData("prompt_completion", (tmp_path / "t.jsonl",), (), 1, 0)
    write(tmp_path / "t.jsonl", [pc(0)])
    with pytest.raises(PrimusUserError, match="one training record cannot be split"):
        stage_sft_data(data, tmp_path / "out")


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    from transformers import PreTrainedTokenizerFast

    from primus.data.tokenizer import train_bpe_tokenizer

    root = tmp_path_factory.mktemp("tok")
    plain = train_bpe_tokenizer(["hello world"] * 20, 300, root / "plain")
    templated = root / "templated"
    tok = PreTrainedTokenizerFast.from_pretrained(str(plain))
    tok.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    tok.save_pretrained(str(templated))
    return plain, templated


def test_chat_template_problem(tokenizers, tmp_path):
    plain, templated = tokenizers
    assert chat_template_problem(str(templated), None) is None
    problem = chat_template_problem(str(plain), None)
    assert problem and "has no chat template" in problem and "--chat_template FILE.jinja" in problem
    assert "prompt/completion" in problem and "\n" not in problem
    template = tmp_path / "chat.jinja"
    template.write_text("{{ messages }}")
    assert chat_template_problem(str(plain), str(template)) is None
    assert "does not exist" in chat_template_problem(str(plain), str(tmp_path / "nope.jinja"))
    (tmp_path / "empty.jinja").write_text("  \n")
    assert "is empty" in chat_template_problem(str(plain), str(tmp_path / "empty.jinja"))
    assert "cannot load tokenizer" in chat_template_problem(str(tmp_path / "no-tokenizer"), None)
