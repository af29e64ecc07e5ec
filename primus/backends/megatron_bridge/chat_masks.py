"""Can Bridge tell the assistant's tokens apart in this chat template? Asked before training.

An assistant-only loss (``sft_loss`` assistant / last_turn) needs the template to mark assistant
content (``{% generation %}`` blocks) or to be one whose boundaries Bridge infers. Otherwise
Bridge fails when it builds the first batch, deep in a data-loader worker, with a traceback.
Here the first record goes through Bridge's own chat tokenisation (``tokenize_chat_example``),
with the tokenizer and template the run will use.
"""

from __future__ import annotations

import json
from pathlib import Path

from primus.core.errors import Problem

KEY = "sft_loss"
FIX = (
    "wrap the assistant content in {% generation %}...{% endgeneration %} in the chat template "
    "(--chat_template FILE), or train on every token with --sft_loss full"
)


def _first_record(path: Path) -> tuple[int, dict] | None:
    with open(path, encoding="utf-8-sig") as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                return number, json.loads(line)
    return None


def assistant_mask_problem(
    data, tokenizer_dir: str, chat_template_path: str | None, loss_mode: str, source: str | None
) -> Problem | None:
    """A problem when the first chat record would train no token or cannot be masked at all."""
    if loss_mode == "full" or not data.training:
        return None
    first = _first_record(Path(data.training[0]))
    if first is None:
        return None
    number, record = first
    from megatron.bridge.data.conversation_processing import tokenize_chat_example
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    if chat_template_path:
        tokenizer.chat_template = Path(chat_template_path).expanduser().read_text(encoding="utf-8")
    where = f"{data.training[0]}:{number}"
    try:
        tokenized = tokenize_chat_example(record, tokenizer, loss_mode=loss_mode, warn_on_all_masked=False)
    except ValueError as exc:
        reason = str(exc).strip().splitlines()[0][:160]
        return Problem(
            f"{where}: the chat template does not show which tokens are the assistant's, so an "
            f"assistant-only loss cannot be masked ({reason})",
            key=KEY,
            source=source,
            hint=FIX,
        )
    if not bool(tokenized.assistant_mask.any()):
        return Problem(
            f"{where}: no token of this record would train: the chat template marks no assistant token",
            key=KEY,
            source=source,
            hint=FIX,
        )
    return None
