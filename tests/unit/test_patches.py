import logging

import pytest

from primus.core.environment import EnvFacts
from primus.core.patches import (
    ALWAYS,
    Condition,
    Patch,
    PatchContext,
    PatchRegistry,
    disabled_patch_ids,
    register_patch,
    run_patches,
)

NO_TE = Condition(lambda ctx: not ctx.env.has_te, "Transformer Engine absent")
CPU = Condition(lambda ctx: ctx.env.on_cpu, "training on CPU")


def ctx(**facts) -> PatchContext:
    return PatchContext(
        backend="b",
        env=EnvFacts(
            has_cuda=facts.get("has_cuda", False),
            has_te=facts.get("has_te", False),
            device=facts.get("device", "cpu"),
        ),
    )


def make_registry(calls):
    reg = PatchRegistry()
    register_patch("b.no_te", backend="b", phase="setup", description="te", condition=NO_TE, registry=reg)(
        lambda c: calls.append("no_te")
    )
    register_patch(
        "b.cpu", backend="b", phase="setup", description="cpu", condition=NO_TE & CPU, registry=reg
    )(lambda c: calls.append("cpu"))
    register_patch("b.args", backend="b", phase="build_args", description="args", registry=reg)(
        lambda c: calls.append("args")
    )
    register_patch("other.x", backend="other", phase="setup", description="x", registry=reg)(
        lambda c: calls.append("other")
    )
    return reg


def test_patches_apply_only_where_condition_holds(caplog):
    calls = []
    reg = make_registry(calls)
    with caplog.at_level(logging.DEBUG):  # outcomes are DEBUG: the run's summary lists the applied ones
        out = run_patches("setup", ctx(), reg)
    assert calls == ["no_te", "cpu"]
    assert [o.applied for o in out] == [True, True]
    assert "patch b.no_te applied (Transformer Engine absent): te" in caplog.text

    calls.clear()
    out = run_patches("setup", ctx(has_te=True, has_cuda=True, device="cuda"), reg)
    assert calls == []
    assert out[0].reason == "condition not met: Transformer Engine absent"
    assert out[1].reason.startswith("condition not met: Transformer Engine absent and training on CPU")


def test_disabled_patch_is_skipped_and_logged(caplog):
    calls = []
    reg = make_registry(calls)
    c = ctx()
    c.disabled = frozenset({"b.cpu"})
    with caplog.at_level(logging.DEBUG):  # outcomes are DEBUG: the run's summary lists the applied ones
        out = run_patches("setup", c, reg)
    assert calls == ["no_te"]
    assert out[1].reason == "disabled by user"
    assert "patch b.cpu skipped (disabled by user)" in caplog.text
    assert c.state["patch_outcomes"] == out


def test_phase_and_backend_filters():
    reg = make_registry([])
    assert [p.id for p in reg.list("b", "build_args")] == ["b.args"]
    assert reg.ids("other") == ["other.x"]
    assert len(reg.list()) == 4


def test_registry_rejects_duplicates_and_bad_phase_or_kind():
    reg = PatchRegistry()
    p = Patch("a", "b", "setup", "d", lambda c: None)
    reg.register(p)
    with pytest.raises(ValueError, match="already registered"):
        reg.register(p)
    with pytest.raises(ValueError, match="unknown phase"):
        reg.register(Patch("c", "b", "later", "d", lambda c: None))
    with pytest.raises(ValueError, match="unknown kind"):
        reg.register(Patch("e", "b", "setup", "d", lambda c: None, ALWAYS, "magic"))


def test_failed_lookup_suggests():
    reg = make_registry([])
    with pytest.raises(KeyError, match="did you mean 'b.cpu'"):
        reg.get("b.cpuu")
    reg.clear()
    assert reg.list() == []


def test_condition_invert_text():
    cond = ~NO_TE
    assert cond.text == "not (Transformer Engine absent)"
    assert cond(ctx(has_te=True))


def test_disabled_ids_from_config_and_environment():
    known = ["b.cpu", "b.no_te", "b.args"]
    ids, problems = disabled_patch_ids(["b.cpu"], {"PRIMUS_PATCHES": "-b.args, +b.cpu"}, known)
    assert ids == {"b.args"}
    assert problems == []


def test_unknown_or_malformed_disable_entries_are_problems():
    known = ["b.cpu", "b.no_te"]
    ids, problems = disabled_patch_ids(
        ["b.cpuu"], {"PRIMUS_PATCHES": "b.no_te,-nope"}, known, config_source="x.yaml:3"
    )
    text = [str(p) for p in problems]
    assert text[0] == (
        "patches.disable (x.yaml:3): unknown patch 'b.cpuu'; did you mean 'b.cpu'? "
        "(see `primus patches list`)"
    )
    assert "malformed entry 'b.no_te'" in text[1]
    assert "PRIMUS_PATCHES (environment): unknown patch 'nope'" in text[2]
