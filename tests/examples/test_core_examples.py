"""Every example of the core and optax front door runs (small sizes) and does what it says."""

from __future__ import annotations

import numpy as np
import pytest
from streams import load_example


def test_core_quickstart() -> None:
    out = load_example("core_quickstart").main(steps=150)
    lr = np.asarray(out["numpy_lr"])
    assert lr[-1] > lr[0]  # improving reward, KL under target: lr rose
    vm = out["vmap_lr"]
    assert vm.shape == (3, 150)
    assert vm[0, -1] < vm[1, -1] <= vm[2, -1]  # larger reward_up, larger lr


def test_optax_quickstart() -> None:
    pytest.importorskip("optax")
    hist = load_example("optax_quickstart").main(steps=60)
    assert hist["loss"][-1] < 0.5 * hist["loss"][0]
    assert len(set(hist["lr"])) > 1  # the controller moved the lr


def test_bench_core_runs_small() -> None:
    pytest.importorskip("optax")
    out = load_example("bench_core").main(configs=8, steps=50, repeats=1, mlp_repeats=1, step_calls=2)
    step = out["jitted_step"]
    assert set(step) == {64, 256} and set(step[64]) == {"plain", "injected", "recommended", "trend"}
    # the controller's state is packed: beyond optax's own inject_hyperparams, its two arrays, the rules_id and the
    # previous update (one array per parameter: 6), not the ~100 scalars of the State
    assert step[64]["recommended"]["arrays_in_state"] == step[64]["injected"]["arrays_in_state"] + 2 + 1 + 6
    assert all(r["kernels"] > 0 and r["ms_per_step"] > 0 for rows in step.values() for r in rows.values())
    assert out["core_scan"]["max_rel_diff_vs_hand"] < 1e-5  # same rule, same numbers
    # The timed programs train the same MLP: the injected constant lr is plain adamw,
    # and the controller's run trains too (its lr differs, so its losses do).
    losses = out["mlp_step"]["losses"]
    np.testing.assert_allclose(losses["injected"], losses["plain"], rtol=1e-3)  # float32 drift over 50 steps
    assert losses["adaptive"][0] == losses["plain"][0]  # same params, same first loss
    assert losses["adaptive"][-1] < losses["adaptive"][0]


def test_bench_anneal_alternatives_estimators() -> None:
    pytest.importorskip("optax")
    import jax.numpy as jnp
    import optax

    mod = load_example("bench_anneal_alternatives")
    rng = np.random.default_rng(0)
    d, beta = 20_000, 0.9

    def rho_of(stream: list[np.ndarray]) -> float:
        m, s, w, w2 = np.zeros(d), 0.0, 0.0, 0.0
        for g in stream:
            m, s, w, w2 = beta * m + g, beta * s + g @ g, beta * w + 1.0, beta * beta * w2 + 1.0
        return float(mod.noise_fraction(jnp.float32(m @ m), jnp.float32(s), jnp.float32(w), jnp.float32(w2)))

    signal = np.ones(d)
    assert rho_of([signal] * 50) == pytest.approx(1.0, abs=1e-4)  # no noise: all signal
    # |G|^2 = tr(Sigma) = d: the model's noise fraction is 1/2.
    assert rho_of([signal + rng.standard_normal(d) for _ in range(60)]) == pytest.approx(0.5, abs=0.03)
    assert rho_of([rng.standard_normal(d) for _ in range(60)]) < 0.03  # zero-mean noise: no signal
    assert rho_of([signal]) == 1.0  # one sample: no estimate, factor 1

    # Hypergradient sign: the lr rises while the gradient keeps the last step's direction, falls when it turns.
    tx = mod.hypergradient(optax.sgd(1.0), 0.1)
    v = {"w": jnp.array([1.0, 2.0])}
    state = tx.init(v)
    u1, state = tx.update(v, state)
    u2, state = tx.update(v, state)
    u3, state = tx.update({"w": -v["w"]}, state)
    np.testing.assert_allclose(u1["w"], -v["w"], rtol=1e-6)
    np.testing.assert_allclose(u2["w"], -v["w"] * np.exp(0.1), rtol=1e-6)
    np.testing.assert_allclose(u3["w"], v["w"], rtol=1e-6)


def test_bench_anneal_alternatives_runs_small() -> None:
    pytest.importorskip("optax")
    mod = load_example("bench_anneal_alternatives")
    rows = mod.main(["--tasks", "logreg", "--size", "tiny", "--seeds", "2"])["logreg"]
    from adaptive_sched.bench._methods import PEER_NAMES

    assert list(rows) == ["ours", *mod.ALTERNATIVES, *PEER_NAMES]
    for row in rows.values():
        assert np.isfinite(row["base"]) and np.isfinite(row["tuned"]) and 0.0 <= row["p_base"] <= 1.0


def test_bench_search_alternatives_runs_small_and_leaves_the_registry_as_it_was() -> None:
    pytest.importorskip("optax")
    from adaptive_sched._rules import rule_names
    from adaptive_sched.bench._methods import PEER_NAMES

    mod = load_example("bench_search_alternatives")
    before = rule_names("search")
    rows = mod.main(["--tasks", "logreg", "--size", "tiny", "--seeds", "2", "--horizon"])["logreg"]
    assert list(rows) == ["range", *mod.ALTERNATIVES, "slope-growth", *PEER_NAMES]
    for row in rows.values():
        assert np.isfinite(row["base"]) and np.isfinite(row["tuned"]) and 0.0 <= row["p_base"] <= 1.0
    assert rule_names("search") == before  # the alternatives were registered for the run only


def test_search_alternatives_progress_rule_doubles_per_responding_leg() -> None:
    # The "progress" criterion by hand: two legs of falling loss, the second twice as steep per unit of
    # lr (it responds): the lr doubles after each leg; then a flat leg: back one doubling, stop.
    import adaptive_sched as A
    from adaptive_sched import _rules

    mod = load_example("bench_search_alternatives")
    rule = mod.ALTERNATIVES["progress"]
    with _rules.registered(rule):
        cfg = A.Config(search_rule=rule.name, base_lr=1e-3, min_lr=1e-6, max_lr=1.0)
        state = A.init(cfg, xp=np)
        losses = [1.0 - 0.01 * i for i in range(8)] + [0.92 - 0.02 * i for i in range(8)] + [0.78] * 8
        lrs = []
        for y in losses:
            state, hp = A.update(state, A.Signals(loss=y))
            lrs.append(float(hp.lr))
    assert lrs[6] == pytest.approx(1e-3) and lrs[7] == pytest.approx(2e-3)  # after the first leg
    assert lrs[15] == pytest.approx(4e-3)  # the second leg's progress per lr held up (same rate x2)
    assert lrs[23] == pytest.approx(2e-3)  # a flat leg: back one doubling, stopped


def test_bench_heldout_tasks_runs_small() -> None:
    pytest.importorskip("optax")
    mod = load_example("bench_heldout_tasks")
    out = mod.main(["--tasks", "quadratic,wine-softmax", "--steps", "30", "--seeds", "1"])
    for rows in out.values():
        assert list(rows)[:3] == ["before", "ours", "ours-horizon"]
        assert all(np.isfinite(r["base"]) for r in rows.values())


def test_screen_search_knobs_runs_small_and_a_default_override_changes_nothing() -> None:
    pytest.importorskip("optax")
    mod = load_example("screen_search_knobs")
    variants = '{"default": {}, "same": {"search_backoff": 2.0}, "bo3": {"search_backoff": 3.0}}'
    out = mod.main(["--tasks", "logreg,quadratic", "--size", "tiny", "--steps", "30", "--seeds", "1",
                    "--variants", variants])  # fmt: skip
    assert list(out) == ["logreg", "quadratic"]
    for row in out.values():
        assert list(row["gaps"]) == ["default", "same", "bo3"]
        assert all(np.isfinite(g) for pair in row["gaps"].values() for g in pair)
        assert row["gaps"]["same"] == row["gaps"]["default"]  # the default knob value, spelt out
        assert row["best"][0] in mod._methods.PEER_NAMES


def test_bench_heldout_linear_regression_runs_small_with_the_issues_target() -> None:
    pytest.importorskip("optax")
    mod = load_example("bench_heldout_tasks")
    x, y, xte, _ = mod._linreg_data()
    assert x.shape == (512, 8) and xte.shape == (128, 8) and 6.0 < float(np.var(y)) < 10.0  # raw targets, var ~8
    rows = mod.main(["--tasks", "linreg-order,linreg-shuffled", "--steps", "48", "--seeds", "1"])
    for name in ("linreg-order", "linreg-shuffled"):
        assert list(rows[name]) == ["before", "ours", "ours-horizon", "constant", "cosine"]  # AdamW peers
        assert all(np.isfinite(r["base"]) for r in rows[name].values())  # a NaN loss would mean a lost step index
        for method in ("ours", "ours-horizon"):
            checks = rows[name][method]["issue_target"]
            assert [c["lr"] for c in checks] == [3e-3, 3e-2]
            assert all(c["ok"] == mod.no_worse(c["mean"], c["constant"]) for c in checks)


def test_bench_recommended_alternatives_quick_and_the_registry_is_left_as_it_was() -> None:
    pytest.importorskip("optax")
    from adaptive_sched._rules import rule_names

    mod = load_example("bench_recommended_alternatives")
    before = rule_names("lr")
    out = mod.main(["--quick", "--tasks", "linreg-order"])
    assert rule_names("lr") == before  # the hypergradient rule was registered for the run only
    ran = [a for a in mod.ALTERNATIVES if a not in out["skipped"]]
    assert "range" in ran and "recommended" in ran
    assert all(why.startswith(mod.NO_GRAD_COS) for a, why in out["skipped"].items() if a == "hypergrad")
    rows = out["tasks"]["linreg-order"]
    assert list(rows) == ["constant", *[a + h for a in ran for h in ("", "+h")]]
    for name, row in list(rows.items())[1:]:
        assert len(row["ratio"]) == 3 and all(np.isfinite(row["ratio"]))
        assert row["ratio"] == pytest.approx([f / c for f, c in zip(row["final"], rows["constant"]["final"])])
        assert out["worst"][name]["ratio"] == max(row["ratio"]) and 0.0 <= row["worst_p"] <= 1.0
