"""`primus data prepare` inputs and user errors, and `primus report` errors (fast: no Megatron)."""

from __future__ import annotations

import json

import pytest

from primus.core.errors import PrimusUserError
from primus.data.sources import find_files, open_corpus, parse_size


def test_directory_input_takes_text_files_sorted_and_skips_hidden(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / ".git").mkdir()
    for name in ("a.txt", "b/c.md", "b/d.py", "e.jsonl", "f.bin", ".git/g.txt", "b/.h.txt"):
        (tmp_path / name).write_text('{"text": "x"}\n' if name.endswith(".jsonl") else "x")
    assert [p.relative_to(tmp_path).as_posix() for p in find_files([tmp_path])] == [
        "a.txt",
        "b/c.md",
        "b/d.py",
        "e.jsonl",
    ]


def test_documents_and_max_bytes(tmp_path):
    data = tmp_path / "c.jsonl"
    data.write_text("\n".join(json.dumps({"content": f"doc {i}"}) for i in range(10)) + "\n\n")
    corpus = open_corpus([data], json_key="content")
    assert list(corpus.texts()) == [f"doc {i}" for i in range(10)]
    line = len(json.dumps({"content": "doc 0"})) + 1
    assert len(list(open_corpus([data], "content", max_bytes=3 * line).texts())) == 3
    assert parse_size("4M") == 4 << 20 and parse_size("500k") == 500 << 10


def test_max_bytes_is_never_exceeded(tmp_path):
    for name, size in (("a.txt", 100), ("b.md", 100), ("c.py", 100)):
        (tmp_path / name).write_text("x" * (size - 1) + "\n")
    (tmp_path / "d.txt").write_text("é" * 50)  # 2 bytes per character
    (tmp_path / "e.jsonl").write_text("".join(json.dumps({"text": f"doc {i}"}) + "\n" for i in range(5)))

    def read(limit):
        docs = list(open_corpus([tmp_path], max_bytes=limit).documents())
        return [text for text, _ in docs], sum(n for _, n in docs)

    assert read(200) == (["x" * 99 + "\n"] * 2, 200)  # the limit falls between documents
    texts, consumed = read(250)  # ... inside one: it is cut there, and nothing follows
    assert consumed == 250 and texts[2] == "x" * 50
    texts, consumed = read(300 + 51)  # a cut through a 2-byte character drops the character
    assert consumed == 350 and texts[-1] == "é" * 25
    line = len(json.dumps({"text": "doc 0"})) + 1
    texts, consumed = read(400 + line + 3)  # a JSONL record is cut to its text's first bytes
    assert consumed == 400 + line + 3 and texts[-2:] == ["doc 0", "doc"]
    for limit in (1, 99, 101, 299, 399, 401, 450):
        assert read(limit)[1] <= limit
    assert read(10**6)[1] == 400 + 5 * line


@pytest.mark.parametrize(
    ("setup", "key", "message"),
    [
        (lambda d: None, "text", "does not exist"),
        (lambda d: (d / "in.txt").write_text("  \n"), "text", "every document is empty"),
        (lambda d: (d / "in.jsonl").write_text('{"body": "x"}\n'), "text", "no key 'text' (found: 'body')"),
        (lambda d: (d / "in.jsonl").write_text("{oops\n"), "text", "not valid JSON"),
    ],
)
def test_bad_inputs_are_user_errors(tmp_path, setup, key, message):
    setup(tmp_path)
    name = next((p.name for p in tmp_path.iterdir()), "missing.txt")
    with pytest.raises(PrimusUserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        open_corpus([tmp_path / name], key)


def test_cli_user_errors_exit_2_with_one_line(cli, tmp_path):
    (tmp_path / "in.jsonl").write_text('{"body": "hello"}\n')
    out = cli(
        "data", "prepare", "--input", str(tmp_path / "in.jsonl"), "--train-tokenizer", "300",
        "--output-prefix", str(tmp_path / "o"),
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("primus: error: ")
    assert "no key 'text'" in out.stderr and "--json-key" in out.stderr

    (tmp_path / "in.txt").write_text("hello world")
    (tmp_path / "afile").write_text("")
    out = cli(
        "data", "prepare", "--input", str(tmp_path / "in.txt"), "--train-tokenizer", "300",
        "--output-prefix", str(tmp_path / "afile" / "o"),
    )  # fmt: skip
    assert out.returncode == 2 and "cannot create output directory" in out.stderr

    out = cli(
        "data", "prepare", "--input", str(tmp_path / "nope"), "--tokenizer", "x", "--output-prefix", "o"
    )
    assert out.returncode == 2 and "nope does not exist" in out.stderr

    # an existing dataset (a run may be training on it) is never replaced without --overwrite
    (tmp_path / "old.bin").write_bytes(b"run data")
    out = cli(
        "data", "prepare", "--input", str(tmp_path / "in.txt"), "--train-tokenizer", "300",
        "--output-prefix", str(tmp_path / "old"),
    )  # fmt: skip
    assert out.returncode == 2 and "old.bin already exist" in out.stderr and "--overwrite" in out.stderr
    assert (tmp_path / "old.bin").read_bytes() == b"run data" and not (tmp_path / "old_tokenizer").exists()


def test_report_errors_exit_2(cli, tmp_path):
    out = cli("report", str(tmp_path / "missing"))
    assert out.returncode == 2 and "does not exist" in out.stderr
    out = cli("report", str(tmp_path))
    assert out.returncode == 2 and "holds no training metrics" in out.stderr


def test_report_from_metrics_jsonl_alone(cli, tmp_path):
    records = [
        {"iteration": i, "loss": 5.0 / i, "lr": 1e-3, "grad_norm": 1.0, "tokens_per_second": 1000.0 + i}
        for i in range(1, 11)
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    out = cli("report", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "loss         5.0000 -> 0.5000 (first and last iteration; last iteration 0.5000" in out.stdout
    assert (tmp_path / "report.png").stat().st_size > 10_000
    assert (tmp_path / "report.txt").read_text().startswith("run ")
