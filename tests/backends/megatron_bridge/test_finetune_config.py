"""Fine-tuning builds: the workload, a recipe without the hub, the user's records, clear refusals.

In-process builds (no training): each test costs a config build, not a Megatron import.
"""

from __future__ import annotations

import json

import pytest

from primus.backends.megatron_bridge.argument_builder import MegatronBridgeArgBuilder
from primus.backends.megatron_bridge.bootstrap import prepare_imports
from primus.core.config import load_config
from primus.core.errors import PrimusUserError
from tests.backends.megatron_bridge.test_patches import CPU_LAPTOP
from tests.finetune_support import (
    CHAT_TEMPLATE,
    make_facts,
    make_tiny_hf_model,
    write_chat,
    write_prompt_completion,
)

pytestmark = pytest.mark.megatron


@pytest.fixture(scope="module", autouse=True)
def _megatron_importable():
    prepare_imports(CPU_LAPTOP)


@pytest.fixture(scope="module")
def material(tmp_path_factory):
    """A tiny HF model with a chat template, one without, and records in both formats."""
    work = tmp_path_factory.mktemp("ft_config")
    facts = make_facts(20)
    return {
        "hf": make_tiny_hf_model(work / "hf", facts),
        "hf_no_template": make_tiny_hf_model(work / "hf_plain", facts, chat_template=False),
        "pc": write_prompt_completion(facts, work / "pc.jsonl"),
        "chat": write_chat(facts, work / "chat.jsonl"),
        "work": work,
    }


#: a batch the 20 records fill (Bridge's fine-tuning bases take 128)
SMALL_BATCH = ["train.global_batch_size=8", "train.micro_batch_size=1"]


def build(material, overrides=(), **flags):
    user = load_config(None, overrides=[*SMALL_BATCH, *overrides], flags=flags)
    user.set("run_dir", str(material["work"] / "run"), "cli")
    return MegatronBridgeArgBuilder(user, CPU_LAPTOP, 1).build()


def test_lora_from_an_hf_directory(material):
    built = build(
        material,
        ["peft.dim=4", "peft.alpha=8"],
        workload="lora",
        hf_model_name_or_path=str(material["hf"]),
        data_path=str(material["pc"]),
    )
    c, view = built.container, built.view()
    assert built.workload == "lora" and type(c.peft).__name__ == "LoRA"
    assert (c.peft.dim, c.peft.alpha) == (4, 8) and view.source_of("peft.dim") == "cli"
    assert c.checkpoint.pretrained_checkpoint == str(material["hf"])
    assert c.dataset.dataset_root == str(material["work"] / "run" / "sft_data")
    assert c.dataset.preprocessing.loss_mode == "completion"
    assert c.tokenizer.tokenizer_model == str(material["hf"])
    assert built.sft_data.format == "prompt_completion" and built.sft_data.training_records == 20


@pytest.mark.parametrize(
    ("recipe", "workload", "peft"), [("llama32_1b_peft", "lora", "LoRA"), ("llama32_1b_sft", "sft", None)]
)
def test_a_fine_tuning_recipe_builds_offline_on_the_users_records(material, recipe, workload, peft):
    built = build(
        material, recipe=recipe, hf_model_name_or_path=str(material["hf"]), data_path=str(material["chat"])
    )
    c, view = built.container, built.view()
    assert built.workload == workload and view.source_of("workload") == f"recipe:{recipe}"
    assert (type(c.peft).__name__ if c.peft else None) == peft
    assert c.dataset.hf_dataset is None and c.dataset.dataset_root.endswith("sft_data")  # no SQuAD
    assert c.dataset.enable_offline_packing  # the recipe's choice
    assert c.model.hidden_size == 64  # the HF directory's architecture, not Llama-3.2-1B's
    assert c.tokenizer.tokenizer_model == str(material["hf"])  # not the hub's meta-llama/...


def test_dora_and_the_loss_on_the_last_turn(material):
    built = build(
        material,
        workload="dora",
        sft_loss="last_turn",
        hf_model_name_or_path=str(material["hf"]),
        data_path=str(material["chat"]),
    )
    assert type(built.container.peft).__name__ == "DoRA"
    assert built.container.dataset.preprocessing.loss_mode == "last_turn"


def test_bad_records_are_named_with_file_line_and_key(material):
    bad = material["work"] / "bad.jsonl"
    bad.write_text(
        json.dumps({"prompt": "q", "completion": "a"}) + "\n" + json.dumps({"prompt": "q"}) + "\nnot json\n"
    )
    with pytest.raises(PrimusUserError) as err:
        build(material, workload="sft", hf_model_name_or_path=str(material["hf"]), data_path=str(bad))
    text = err.value.render()
    assert f"{bad}:2" in text and "completion" in text and f"{bad}:3" in text


def test_chat_records_need_a_chat_template(material, tmp_path):
    kwargs = {"workload": "lora", "hf_model_name_or_path": str(material["hf_no_template"])}
    with pytest.raises(PrimusUserError, match="chat_template"):
        build(material, data_path=str(material["chat"]), **kwargs)
    template = tmp_path / "chat.jinja"
    template.write_text(CHAT_TEMPLATE)
    built = build(material, data_path=str(material["chat"]), chat_template=str(template), **kwargs)
    assert built.container.tokenizer.chat_template_path == str(template)
    build(material, data_path=str(material["pc"]), **kwargs)  # prompt/completion needs none


def test_an_assistant_only_loss_needs_a_template_that_marks_the_assistant(material, tmp_path):
    """Refused before training (Bridge failed in a data-loader worker when the first batch was built)."""
    unmarked = tmp_path / "unmarked.jinja"
    unmarked.write_text("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>\n{% endfor %}")
    kwargs = {
        "workload": "sft",
        "hf_model_name_or_path": str(material["hf_no_template"]),
        "data_path": str(material["chat"]),
        "chat_template": str(unmarked),
    }
    with pytest.raises(PrimusUserError) as err:
        build(material, **kwargs)
    assert f"{material['chat']}:1" in err.value.render() and "--sft_loss full" in err.value.render()
    assert build(material, sft_loss="full", **kwargs).container.dataset.preprocessing.loss_mode == "full"


def test_refusals_say_what_to_do(material):
    with pytest.raises(PrimusUserError, match="--workload sft"):  # JSONL records, pretraining
        build(material, data_path=str(material["pc"]))
    with pytest.raises(PrimusUserError, match="--hf_model_name_or_path DIR"):  # nothing to start from
        build(material, workload="lora", data_path=str(material["pc"]))
    with pytest.raises(PrimusUserError, match="none were given"):  # no records
        build(material, workload="sft", hf_model_name_or_path=str(material["hf"]))
    with pytest.raises(PrimusUserError, match="19 training records and one global batch needs 64"):
        build(
            material,
            ["train.global_batch_size=64"],
            workload="sft",
            hf_model_name_or_path=str(material["hf"]),
            data_path=str(material["pc"]),
        )  # 20 records, 1 held out
    with pytest.raises(PrimusUserError, match="workload pretrain cannot run it"):
        build(material, workload="pretrain", recipe="llama32_1b_peft")


def test_a_small_validation_split_validates_in_the_batch_it_fills(material):
    built = build(
        material,
        ["train.global_batch_size=8", "train.micro_batch_size=4"],
        workload="sft",
        hf_model_name_or_path=str(material["hf"]),
        data_path=str(material["pc"]),
    )  # 20 records, 5 % held out: 1 validation record
    val = built.container.validation
    assert (val.eval_global_batch_size, val.eval_micro_batch_size, val.eval_iters) == (1, 1, 1)
    assert built.view().source_of("validation.eval_global_batch_size").startswith("derived:")
