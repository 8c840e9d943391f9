"""Contracts JAX users rely on: buffer donation, loud misuse, restoring into another config."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

import adaptive_sched as A

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")
jnp = jax.numpy

LOSS_CFG = A.Config(lr_rule="trend", base_lr=1e-2, max_lr=0.1, trend_up=1.1, trend_down=0.7, ema_beta=0.5)


def _params() -> dict[str, Any]:
    return {"w": jnp.ones((3,), jnp.float32), "b": jnp.zeros((), jnp.float32)}


def _front_doors(cfg: A.Config) -> dict[str, Any]:
    return {
        "inject_hyperparams": A.optax.inject_hyperparams(optax.adam, cfg)(),
        "scale_by_controller": optax.chain(optax.adam(cfg.base_lr), A.optax.scale_by_controller(cfg)),
    }


# --------------------------------------------------------------------------- donation


@pytest.mark.parametrize("door", ["inject_hyperparams", "scale_by_controller"])
def test_state_from_init_can_be_donated_to_a_jitted_step(door: str) -> None:
    tx = _front_doors(LOSS_CFG)[door]
    params = _params()
    state = tx.init(params)
    leaves = jax.tree.leaves(state)
    assert len({id(x) for x in leaves}) == len(leaves), "init must give every leaf its own array"

    def step(params: Any, state: Any, loss: Any) -> Any:
        grads = jax.tree.map(jnp.ones_like, params)
        updates, state = tx.update(grads, state, params, value=loss)
        return optax.apply_updates(params, updates), state

    donated = jax.jit(step, donate_argnums=(0, 1))
    plain = jax.jit(step)
    p1, s1 = params, state
    p2, s2 = params, tx.init(params)
    for loss in (3.0, 2.0, 2.5, 1.0):
        p2, s2 = plain(p2, s2, jnp.float32(loss))
    for loss in (3.0, 2.0, 2.5, 1.0):
        p1, s1 = donated(p1, s1, jnp.float32(loss))
    for a, b in zip(jax.tree.leaves((p1, s1)), jax.tree.leaves((p2, s2))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_core_state_from_init_can_be_donated() -> None:
    state = A.init(LOSS_CFG, xp=jnp)
    leaves = jax.tree.leaves(state)
    assert len({id(x) for x in leaves}) == len(leaves)
    step = jax.jit(lambda s, loss: A.update(s, A.Signals(loss=loss)), donate_argnums=0)
    for loss in (3.0, 2.0, 1.0):
        state, hp = step(state, jnp.float32(loss))
    assert float(hp.lr) == pytest.approx(1e-2 * 1.1 * 1.1)  # two improvements


# --------------------------------------------------------------------------- misuse


@pytest.mark.parametrize("door", ["inject_hyperparams", "scale_by_controller"])
def test_torch_keywords_are_refused_naming_the_optax_ones(door: str) -> None:
    tx = _front_doors(LOSS_CFG)[door]
    params = _params()
    state = tx.init(params)
    with pytest.raises(TypeError, match=r"value="):
        tx.update(params, state, params, loss=jnp.float32(1.0))
    rcfg = A.Config(reward_rule="trend", base_lr=1e-2, max_lr=0.1)
    tx = _front_doors(rcfg)[door]
    with pytest.raises(TypeError, match=r"reward="):
        tx.update(params, tx.init(params), params, R=jnp.float32(1.0))


def test_unknown_extra_args_are_ignored_as_optax_does() -> None:
    # optax.chain forwards every extra arg to every transformation; each one
    # ignores those it does not know (optax.with_extra_args_support).
    tx = _front_doors(LOSS_CFG)["inject_hyperparams"]
    params = _params()
    tx.update(params, tx.init(params), params, value=jnp.float32(1.0), some_other_arg=3)
    # "loss" next to "value" may be meant for another transformation in the chain.
    tx.update(params, tx.init(params), params, value=jnp.float32(1.0), loss=2.0)


@pytest.mark.parametrize("door", ["inject_hyperparams", "scale_by_controller"])
def test_a_loss_rule_without_value_warns_once_at_trace_time(door: str) -> None:
    tx = _front_doors(LOSS_CFG)[door]
    params = _params()
    state = tx.init(params)
    step = jax.jit(lambda s: tx.update(params, s, params)[1])
    with pytest.warns(UserWarning, match=r"value=") as rec:  # noqa: PT031 (the count over steps is the test)
        for _ in range(3):
            state = step(state)
    assert len([w for w in rec if "value=" in str(w.message)]) == 1
    # eager use: still once per transformation, not per step
    with pytest.warns(UserWarning, match=r"value=") as rec:  # noqa: PT031 (the count over steps is the test)
        tx2 = _front_doors(LOSS_CFG)[door]
        s = tx2.init(params)
        for _ in range(3):
            s = tx2.update(params, s, params)[1]
    assert len([w for w in rec if "value=" in str(w.message)]) == 1
    # no warning when no rule reads the loss, or when it is passed
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tx3 = _front_doors(A.Config(lr_rule="cyclical", base_lr=1e-2, max_lr=0.1))[door]
        tx3.update(params, tx3.init(params), params)
        tx4 = _front_doors(LOSS_CFG)[door]
        tx4.update(params, tx4.init(params), params, value=1.0)


@pytest.mark.parametrize("bad", [[1.0, 2.0], (1.0,), "1.0", np.ones(3, np.float32), True, np.bool_(False)])
def test_non_scalar_value_is_refused_clearly(bad: Any) -> None:
    tx = _front_doors(LOSS_CFG)["inject_hyperparams"]
    params = _params()
    with pytest.raises((TypeError, ValueError), match=r"value="):
        tx.update(params, tx.init(params), params, value=bad)


# --------------------------------------------------------------------------- restore into another config


def _restore_as(state: Any, target: Any) -> Any:
    """What Orbax does: the saved leaves put into the target's tree structure."""
    leaves = jax.tree.leaves(state)
    treedef = jax.tree.structure(target)
    assert treedef.num_leaves == len(leaves)
    return jax.tree.unflatten(treedef, leaves)


@pytest.mark.parametrize("door", ["inject_hyperparams", "scale_by_controller"])
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_state_restored_under_another_rule_set_is_refused(door: str, jit: bool) -> None:
    params = _params()
    tx_a = _front_doors(LOSS_CFG)[door]
    # Another rule set with as many leaves (its stored knobs: decay_k and two kept non-defaults), so a
    # checkpointer restores the leaves without noticing; only the state's rules_id can tell.
    other = A.Config(lr_rule="loss_decay", decay_k=0.1, base_lr=1e-2, max_lr=0.1, trend_up=1.1, trend_down=0.7)
    tx_b = _front_doors(other)[door]
    saved = tx_a.update(params, tx_a.init(params), params, value=jnp.float32(1.0))[1]
    restored = _restore_as(saved, tx_b.init(params))

    def upd(s: Any) -> Any:
        return tx_b.update(params, s, params, value=jnp.float32(1.0))[1]

    if jit:  # no conditional with a host callback in the step (it cost more than the controller): the lr is NaN,
        # so the step cannot run quietly on the wrong state, and the eager helpers say why
        new = jax.block_until_ready(jax.jit(upd)(restored))
        leaves = [x for x in jax.tree.leaves(new) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)]
        assert any(bool(jnp.any(jnp.isnan(x))) for x in leaves)
        for helper in (A.optax.diagnostics, A.optax.controller_state):
            with pytest.raises(ValueError, match=r"rule set|config") as info:
                helper(new)
            assert "trend" in str(info.value)
    else:
        with pytest.raises(Exception, match=r"rule set|config") as info:
            upd(restored)
        assert "trend" in str(info.value)  # names what the state was made by
    # the same rule set (other knob values) restores fine
    tx_c = _front_doors(LOSS_CFG.replace(trend_up=1.2))[door]
    ok = _restore_as(saved, tx_c.init(params))
    jax.block_until_ready(tx_c.update(params, ok, params, value=jnp.float32(1.0)))


@pytest.mark.parametrize("door", ["inject_hyperparams", "scale_by_controller"])
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("direction", ["recommended_into_trend", "trend_into_recommended"])
def test_state_of_another_rule_set_with_other_slots_is_refused_clearly(door: str, jit: bool, direction: str) -> None:
    # The state object itself (not re-leafed into the target's structure): its rule slots differ,
    # which used to surface under jit as a bare KeyError from inside the controller.
    params = _params()
    configs = [A.recommended(1e-2), LOSS_CFG]
    if direction == "trend_into_recommended":
        configs.reverse()
    tx_a, tx_b = (_front_doors(c)[door] for c in configs)
    saved = tx_a.update(params, tx_a.init(params), params, value=jnp.float32(1.0))[1]

    def upd(s: Any) -> Any:
        return tx_b.update(params, s, params, value=jnp.float32(1.0))[1]

    fn = jax.jit(upd) if jit else upd
    with pytest.raises(ValueError, match=r"another rule set") as info:
        fn(saved)
    assert "rule slots" in str(info.value) or not jit
    msg = str(info.value)
    # names recommended()'s slot rule (the evidence rule), as what made the state or what the config expects
    assert "lr_rule='evidence'" in msg or "lr.evidence." in msg


# --------------------------------------------------------------------------- derived from the registry


def _slot_rule() -> Any:
    """A registered rule with state slots (float32 and int32), reading the loss."""
    from adaptive_sched import _rules

    def count_ups(xp: Any, obs: Any, knobs: Any, ctx: Any) -> Any:
        """Test rule: lr down by ``rate`` each time the smoothed loss rises."""
        up = xp.logical_and(obs.ok, obs.hat > ctx.slots["last"])
        last = xp.where(obs.ok, obs.hat, ctx.slots["last"])
        n = ctx.slots["n"] + xp.astype(up, xp.int32)
        return xp.where(up, -knobs.rate, 0.0), {"last": last, "n": n}

    rate = _rules.knob("ups_rate", 0.1, _rules.CHECKS["nonneg"], "test knob")
    return _rules.Rule(
        "lr", "count_ups", "increment", "loss", count_ups, {"rate": rate},
        slots=(_rules.Slot("last", "float32", 0.0), _rules.Slot("n", "int32", 0)),
    )  # fmt: skip


@pytest.mark.parametrize("door", ["core", "inject_hyperparams", "scale_by_controller"])
def test_rule_slots_get_their_own_buffers_and_can_be_donated(door: str) -> None:
    from adaptive_sched import _rules

    with _rules.registered(_slot_rule()):
        cfg = A.Config(lr_rule="count_ups", base_lr=1e-2, max_lr=0.1, ema_beta=0.0)
        if door == "core":
            state = A.init(cfg, xp=jnp)
            assert set(state.rule_state) == {"lr.count_ups.last", "lr.count_ups.n"}
            leaves = jax.tree.leaves(state)
            assert len({id(x) for x in leaves}) == len(leaves)
            step = jax.jit(lambda s, loss: A.update(s, A.Signals(loss=loss)), donate_argnums=0)
            for loss in (1.0, 2.0, 1.5, 3.0):
                state, hp = step(state, jnp.float32(loss))
            assert int(state.rule_state["lr.count_ups.n"]) == 3  # 0 -> 1, 1 -> 2 and 1.5 -> 3
            assert float(hp.lr) == pytest.approx(1e-2 * np.exp(-0.3), rel=1e-6)
            return
        tx = _front_doors(cfg)[door]
        params = _params()
        state = tx.init(params)
        leaves = jax.tree.leaves(state)
        assert len({id(x) for x in leaves}) == len(leaves)

        def run(s: Any, loss: Any) -> Any:
            return tx.update(jax.tree.map(jnp.ones_like, params), s, params, value=loss)[1]

        donated, plain = jax.jit(run, donate_argnums=0), jax.jit(run)
        s1, s2 = state, tx.init(params)
        for loss in (1.0, 2.0, 1.5, 3.0):
            s2 = plain(s2, jnp.float32(loss))
            s1 = donated(s1, jnp.float32(loss))
        for a, b in zip(jax.tree.leaves(s1), jax.tree.leaves(s2)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_fingerprint_derives_from_the_registry() -> None:
    from streams import all_combos, config_for

    from adaptive_sched import _checkpoint, _optax, _rules

    fps = {_checkpoint.rule_set_id(config_for(c)) for c in all_combos()}
    assert len(fps) == len(all_combos())  # every rule set its own fingerprint
    # all "none" rules and the active rules only: a family added later (its rule "none")
    # leaves the fingerprints of existing configs as they are
    assert _checkpoint._rules_text(A.Config(lr_rule="trend", kl_rule="target")) == "lr_rule=trend/kl_rule=target"
    with _rules.registered(_slot_rule()):
        assert len({_checkpoint.rule_set_id(config_for(c)) for c in all_combos()}) == len(all_combos())
        cfg = A.Config(lr_rule="count_ups", base_lr=1e-2, max_lr=0.1)
        assert "lr_rule='count_ups'" in _checkpoint._describe(_checkpoint.rule_set_id(cfg))
        # the loss warning and the keyword check read the registry too
        assert _optax._read_signals(cfg) == {"value": "lr_rule='count_ups'"}
        tx = _front_doors(cfg)["inject_hyperparams"]
        params = _params()
        with pytest.raises(TypeError, match=r"lr_rule='count_ups' reads value="):
            tx.update(params, tx.init(params), params, loss=1.0)
        # a state made under the registered rule, restored into a trend config: refused, naming it
        saved = tx.update(params, tx.init(params), params, value=jnp.float32(1.0))[1]
    other = A.Config(lr_rule="trend", base_lr=1e-2, max_lr=0.1)
    assert _optax._read_signals(A.Config(momentum_rule="exp", reward_rule="trend", kl_rule="target")) == {
        "value": "momentum_rule='exp'",
        "reward": "reward_rule='trend'",
        "kl": "kl_rule='target'",
    }
    with pytest.raises(ValueError, match=r"another rule set \(an unknown rule set"):
        _optax._checked_rules_id(saved.rules_id, other)
