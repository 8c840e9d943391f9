"""The torch mirror: real torch training loops, torch's own schedulers against our torch adapter.

Two tasks of the JAX suite, rebuilt in torch on the same data and model:

* ``digits-mlp``: the same MLP and data, ``torch.optim.Adam``, minibatches
  drawn with a ``torch.Generator``.
* ``rl-sentiment``: the same pretrained policy (the JAX char-lm's weights,
  loaded into ``torch.nn.GRU``, whose equations are the same), the same
  sentiment scorer, RLOO with the exact KL penalty, ``torch.optim.Adam``.

Methods, all at the task's base lr (no lr grid here), Adam ``betas=(0.9, 0.999)``:
no scheduler (``constant``), ``CosineAnnealingLR(T_max=steps)``,
``OneCycleLR(max_lr=lr, total_steps=steps)`` (torch defaults, including its
momentum cycling of ``betas[0]`` between 0.85 and 0.95),
``ReduceLROnPlateau(factor=0.5, patience=5, threshold=1e-4, min_lr=lr/100)``
stepped every 5 steps with the 5-step mean loss (as the optax peer), and
:class:`adaptive_sched.adapters.torch.AdaptiveScheduler` with our presets
(``observe(loss=, R=, kl=, model=)`` after ``optimizer.step()``).

Runs only when torch and the torch adapter import; the report says why when not.
"""

from __future__ import annotations

import math
import pathlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from adaptive_sched.bench import _data, _stats

__all__ = ["MIRROR_TASKS", "available", "run_and_describe", "run_mirror"]

MIRROR_TASKS: tuple[str, ...] = ("digits-mlp", "rl-sentiment")
TORCH_PEERS: tuple[str, ...] = ("constant", "cosine", "onecycle", "plateau")
MIRROR_PRESETS: dict[str, tuple[str, ...]] = {
    "digits-mlp": ("ours", "ours-variance", "ours-momentum", "ours-gradnorm"),
    "rl-sentiment": ("ours", "ours-reward-trend", "ours-kl"),
}
_PLATEAU_EVERY = 5


def available() -> tuple[bool, str]:
    """Whether the mirror can run, and if not, why."""
    try:
        import torch  # noqa: F401
    except ImportError as err:
        return False, f"torch is not importable ({err}); install torch to run it (a CPU build: `pip install torch --index-url https://download.pytorch.org/whl/cpu`)."
    try:
        from adaptive_sched.adapters.torch import AdaptiveScheduler  # noqa: F401
    except ImportError as err:
        return False, f"the torch adapter adaptive_sched.adapters.torch is not importable ({err})."
    return True, ""


# --------------------------------------------------------------------------- schedulers


class _Sched:
    """One method's scheduler behind a common per-step call."""

    def __init__(self, name: str, optimizer: Any, base_lr: float, steps: int, config: Any) -> None:
        import torch

        self.name = name
        self.optimizer = optimizer
        self.adaptive = None
        self.plateau = None
        self.torch_sched: torch.optim.lr_scheduler.LRScheduler | None = None
        self.window: list[float] = []
        lrs = torch.optim.lr_scheduler
        if config is not None:
            from adaptive_sched.adapters.torch import AdaptiveScheduler

            self.adaptive = AdaptiveScheduler(optimizer, config=config)
        elif name == "cosine":
            self.torch_sched = lrs.CosineAnnealingLR(optimizer, T_max=steps)
        elif name == "onecycle":
            self.torch_sched = lrs.OneCycleLR(optimizer, max_lr=base_lr, total_steps=steps)
        elif name == "plateau":
            self.plateau = lrs.ReduceLROnPlateau(
                optimizer, mode="min", factor=0.5, patience=5, threshold=1e-4, min_lr=base_lr * 0.01
            )
        elif name != "constant":
            raise ValueError(f"unknown torch mirror method {name!r}")

    def after_step(self, loss: float, reward: float | None, kl: float | None, model: Any) -> None:
        """Call after ``optimizer.step()`` with this step's signals."""
        if self.adaptive is not None:
            self.adaptive.observe(loss=loss, R=reward, kl=kl, model=model)
        elif self.torch_sched is not None:
            self.torch_sched.step()
        elif self.plateau is not None:
            self.window.append(loss)
            if len(self.window) == _PLATEAU_EVERY:
                self.plateau.step(float(np.mean(self.window)))
                self.window = []


def _hparams(optimizer: Any) -> tuple[float, float]:
    group = optimizer.param_groups[0]
    return float(group["lr"]), float(group["betas"][0])


# --------------------------------------------------------------------------- digits-mlp


def _digits_run(
    method: str, config: Any, seed: int, size: str, base_lr: float
) -> dict[str, Any]:
    import torch

    s = _data.DIGITS_SIZES[size]
    xtr, ytr, xte, yte = (torch.tensor(a) for a in _data.digits_data())
    ytr, yte = ytr.long(), yte.long()
    gen = torch.Generator().manual_seed(seed)
    hidden = s["hidden"]
    first, last = torch.nn.Linear(64, hidden), torch.nn.Linear(hidden, 10)
    model = torch.nn.Sequential(first, torch.nn.ReLU(), last)
    with torch.no_grad():
        for layer in (first, last):
            fan_in = layer.weight.shape[1]
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) / math.sqrt(fan_in))
            layer.bias.zero_()
    opt = torch.optim.Adam(model.parameters(), lr=base_lr, betas=(0.9, 0.999))
    steps = s["steps"]
    sched = _Sched(method, opt, base_lr, steps, config)
    loss_fn = torch.nn.CrossEntropyLoss()
    losses, lrs, moms = [], [], []
    for _ in range(steps):
        idx = torch.randint(0, xtr.shape[0], (s["batch"],), generator=gen)
        loss = loss_fn(model(xtr[idx]), ytr[idx])
        opt.zero_grad()
        loss.backward()
        lr, mom = _hparams(opt)
        opt.step()
        value = float(loss.detach())
        sched.after_step(value, None, None, model)
        losses.append(value)
        lrs.append(lr)
        moms.append(mom)
    with torch.no_grad():
        acc = float((model(xte).argmax(-1) == yte).float().mean())
    return {"metric": acc, "loss": losses, "lr": lrs, "momentum": moms}


# --------------------------------------------------------------------------- rl-sentiment


class _Policy:
    """The char GRU in torch, loaded from the JAX parameters (same equations as ``torch.nn.GRU``)."""

    def __init__(self, params: Mapping[str, np.ndarray]) -> None:
        import torch

        v, e = params["emb"].shape
        h = params["wh"].shape[0]
        self.emb = torch.nn.Embedding(v, e)
        self.gru = torch.nn.GRU(e, h, batch_first=True)
        self.head = torch.nn.Linear(h, v)
        def t(name: str, transpose: bool = False) -> Any:
            a = np.asarray(params[name], np.float32)
            return torch.tensor(a.T if transpose else a)

        with torch.no_grad():
            self.emb.weight.copy_(t("emb"))
            gru = dict(self.gru.named_parameters())
            gru["weight_ih_l0"].copy_(t("wx", True))
            gru["weight_hh_l0"].copy_(t("wh", True))
            gru["bias_ih_l0"].copy_(t("bx"))
            gru["bias_hh_l0"].copy_(t("bh"))
            self.head.weight.copy_(t("wo", True))
            self.head.bias.copy_(t("bo"))
        self.module = torch.nn.ModuleList([self.emb, self.gru, self.head])
        self.hidden = h

    def logits(self, tokens: Any, h0: Any = None) -> tuple[Any, Any]:
        """Teacher-forced logits after each token (batch, time, vocab) and the final state."""
        out, h = self.gru(self.emb(tokens), h0)
        return self.head(out), h


def rl_sentiment_reward(tokens: Any, mask: Any, weights: Any) -> Any:
    """The sentiment reward in torch: ``tanh(sum_t W[x_t, x_{t+1}] m_{t+1} / 2)`` (as the JAX task)."""
    import torch

    pair = weights[tokens[:, :-1], tokens[:, 1:]] * mask[:, 1:]
    return torch.tanh(pair.sum(1) / 2.0)


def _end_mask(tokens: Any) -> Any:
    import torch

    is_end = (tokens == _data.END).long()
    ended_before = torch.cumsum(is_end, 1) - is_end
    return (ended_before == 0).float()


def _rl_run(
    method: str, config: Any, seed: int, size: str, base_lr: float, ref_params: Mapping[str, np.ndarray]
) -> dict[str, Any]:
    import torch

    s = _data.RL_SIZES[size]
    gen = torch.Generator().manual_seed(seed)
    policy, ref = _Policy(ref_params), _Policy(ref_params)
    for p in ref.module.parameters():
        p.requires_grad_(False)
    weights = torch.from_numpy(_data.sentiment_weights())
    prompt = torch.from_numpy(_data.encode(_data.PROMPTS["rl-sentiment"]).astype(np.int64))
    batch, n_gen, beta = s["batch"], s["gen"], _data.KL_BETA
    opt = torch.optim.Adam(policy.module.parameters(), lr=base_lr, betas=(0.9, 0.999))
    steps = s["steps"]
    sched = _Sched(method, opt, base_lr, steps, config)

    def sample(n: int) -> Any:
        with torch.no_grad():
            _, h = policy.logits(prompt[None, :-1].expand(n, -1))
            tok = prompt[-1:].expand(n)
            out = []
            for _ in range(n_gen):
                logits, h = policy.logits(tok[:, None], h)
                tok = torch.multinomial(torch.softmax(logits[:, -1], -1), 1, generator=gen)[:, 0]
                out.append(tok)
            return torch.stack(out, 1)

    def logprobs(model: _Policy, tokens: Any) -> Any:
        n = tokens.shape[0]
        inputs = torch.cat([prompt[None].expand(n, -1), tokens[:, :-1]], 1)
        logits, _ = model.logits(inputs)
        return torch.log_softmax(logits[:, prompt.shape[0] - 1 :], -1)

    curves: dict[str, list[float]] = {k: [] for k in ("loss", "lr", "momentum", "reward", "reward_std", "kl")}
    for _ in range(steps):
        toks = sample(batch)
        mask = _end_mask(toks)
        r = rl_sentiment_reward(toks, mask, weights)
        with torch.no_grad():
            ref_lp = logprobs(ref, toks)
        lp = logprobs(policy, toks)
        tok_lp = lp.gather(-1, toks[..., None])[..., 0]
        kl = ((lp.exp() * (lp - ref_lp)).sum(-1) * mask).sum(1)
        adv = (r - r.mean()) * batch / (batch - 1)
        loss = -(adv * (tok_lp * mask).sum(1)).mean() + beta * kl.mean()
        opt.zero_grad()
        loss.backward()
        lr, mom = _hparams(opt)
        opt.step()
        r_mean, kl_mean = float(r.mean()), float(kl.mean().detach())
        value = -(r_mean - beta * kl_mean)
        sched.after_step(value, r_mean, kl_mean, policy.module)
        for k, v in (("loss", value), ("lr", lr), ("momentum", mom), ("reward", r_mean),
                     ("reward_std", float(r.std(unbiased=False))), ("kl", kl_mean)):  # fmt: skip
            curves[k].append(v)
    toks = sample(s["eval_batch"])
    metric = float(rl_sentiment_reward(toks, _end_mask(toks), weights).mean())
    return {"metric": metric, **curves}


# --------------------------------------------------------------------------- driver


def run_mirror(
    tasks: Sequence[str],
    size: str,
    seeds: int,
    policy: Mapping[str, np.ndarray] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the mirror: for each task, every torch method x ``seeds`` at the base lr.

    Args:
      tasks: a subset of :data:`MIRROR_TASKS`.
      size: task size (``"tiny"``, ``"quick"``, ``"default"``, ``"full"``).
      seeds: seeds per method.
      policy: the pretrained policy parameters (``rl-sentiment``; pretrained here when None).
      progress: optional callback receiving a short status string.

    Returns:
      ``{task: {"methods": [...], "base_lr": lr, "runs": {method: [per-seed dict]},
      "seconds": s}}``.

    Raises:
      ValueError: for a task outside :data:`MIRROR_TASKS`.
    """
    import torch

    from adaptive_sched.bench._methods import preset_config
    from adaptive_sched.bench._tasks import get_task, pretrain_policy

    bad = [t for t in tasks if t not in MIRROR_TASKS]
    if bad:
        raise ValueError(f"tasks={list(tasks)!r} is invalid: the torch mirror runs {', '.join(MIRROR_TASKS)}.")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is fastest and leaves a core to JAX/others
    out: dict[str, Any] = {}
    try:
        for name in tasks:
            t0 = time.perf_counter()
            if name == "rl-sentiment" and policy is None:
                policy = pretrain_policy(size)
            task = get_task(name, size, policy=policy)
            base_lr = task.base_lr
            methods = list(MIRROR_PRESETS[name]) + list(TORCH_PEERS)
            runs: dict[str, list[dict[str, Any]]] = {}
            for m in methods:
                config = None
                if m.startswith("ours"):
                    config = preset_config(m, task, base_lr)
                if progress:
                    progress(f"torch mirror: {name} {m}")
                runs[m] = []
                for seed in range(seeds):
                    if name == "digits-mlp":
                        runs[m].append(_digits_run(m, config, seed, size, base_lr))
                    else:
                        assert policy is not None  # rl-sentiment, the one RL mirror task, set it above
                        runs[m].append(_rl_run(m, config, seed, size, base_lr, policy))
            out[name] = {
                "methods": methods,
                "base_lr": base_lr,
                "runs": runs,
                "seconds": time.perf_counter() - t0,
            }
    finally:
        torch.set_num_threads(threads)
    return out


def describe(result: Mapping[str, Any], higher: Mapping[str, bool]) -> tuple[dict[str, Any], list[str]]:
    """Summaries (JSON-ready) and report lines for a mirror result."""
    from adaptive_sched.bench._summary import verdict

    lines = [
        "Real torch loops (`torch.optim.Adam`, torch's own schedulers, our "
        "`adaptive_sched.adapters.torch.AdaptiveScheduler`), at each task's base lr only, "
        "same data, model and initial policy as the JAX tasks (but torch's random numbers, so "
        "seeds differ from the JAX runs). Peers: no scheduler (`constant`), "
        "`CosineAnnealingLR(T_max=steps)`, `OneCycleLR(max_lr=lr, total_steps=steps)` "
        "(torch defaults, which also cycle Adam's beta1 between 0.85 and 0.95), "
        f"`ReduceLROnPlateau(factor=0.5, patience=5, threshold=1e-4, min_lr=lr/100)` stepped every "
        f"{_PLATEAU_EVERY} steps with the window-mean loss. Ours: `AdaptiveScheduler(opt, config=Config(...))` "
        "with the same presets, `observe(loss=, R=, kl=, model=)` after `optimizer.step()`.",
        "",
    ]
    summary: dict[str, Any] = {}
    for name, r in result.items():
        hib = higher[name]
        finals = {m: np.array([run["metric"] for run in r["runs"][m]], np.float64) for m in r["methods"]}
        peers = [m for m in r["methods"] if not m.startswith("ours")]
        best = max(peers, key=lambda m: _stats.iqm(finals[m]) * (1 if hib else -1))
        rows, s_task = [], {}
        for m in r["methods"]:
            mean, std = _stats.mean_std(finals[m])
            lo, hi = _stats.bootstrap_ci(finals[m])
            p = _stats.prob_improvement(finals[m], finals[best], hib)
            kl = [np.mean(run["kl"]) for run in r["runs"][m]] if "kl" in r["runs"][m][0] else None
            s_task[m] = {"mean": mean, "std": std, "iqm": _stats.iqm(finals[m]), "ci": [lo, hi],
                         "p_beats_best_baseline": p, "per_seed": finals[m].tolist()}  # fmt: skip
            row = [f"**{m}**" if m.startswith("ours") else m, f"{mean:.3f} ± {std:.3f}",
                   f"{_stats.iqm(finals[m]):.3f} [{lo:.3f}, {hi:.3f}]",
                   f"{p:.2f} ({verdict(p)})" if m.startswith("ours") else ("best baseline" if m == best else "")]  # fmt: skip
            if kl is not None:
                row.append(f"{np.mean(kl):.2f}")
            rows.append(row)
        summary[name] = {"best_baseline": best, "methods": s_task, "seconds": r["seconds"]}
        header = ["method", "final (mean ± std)", "IQM [95% CI]", f"P(beats {best})"]
        if name != "digits-mlp":
            header.append("KL mean")
        lines += [f"**{name}** (torch, {len(r['runs'][r['methods'][0]])} seeds, base lr {r['base_lr']:g}, "
                  f"{r['seconds']:.0f} s):", ""]  # fmt: skip
        lines += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines += ["", f"![torch {name}](torch-{name}.png)", ""]
    return summary, lines


def plot(result: Mapping[str, Any], out_dir: pathlib.Path) -> list[str]:
    """One figure per mirror task: smoothed loss or reward with seed bands, and the lr."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from adaptive_sched.bench._report import band, method_colors, save_figure

    names = []
    for name, r in result.items():
        key = "reward" if name != "digits-mlp" else "loss"
        colors = method_colors(r["methods"], {m for m in r["methods"] if m.startswith("ours")})
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
        for m in r["methods"]:
            color, style = colors[m]
            y = np.array([run[key] for run in r["runs"][m]], np.float64)
            y = _stats.moving_average(y, 10)
            x = np.arange(1, y.shape[1] + 1)
            band(axes[0], x, y, color, style, m)
            for ax, k in ((axes[1], "lr"), (axes[2], "momentum")):
                ax.plot(x, np.array([run[k] for run in r["runs"][m]], np.float64).mean(0), color=color, linestyle=style)
        axes[0].set_title(f"{'batch reward' if key == 'reward' else 'training loss'} (10-step avg, mean ± std)")
        axes[1].set_title("lr (seed mean)")
        axes[1].set_yscale("log")
        axes[2].set_title("Adam beta1 (seed mean)")
        for ax in axes:
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
        fname = f"torch-{name}.png"
        save_figure(fig, axes[0], f"torch mirror: {name} at base lr {r['base_lr']:g}", out_dir / fname, ncol=5)
        names.append(fname)
    return names


def run_and_describe(
    tasks: Sequence[str],
    size: str,
    seeds: int,
    out_dir: pathlib.Path,
    policy: Mapping[str, np.ndarray] | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[dict[str, Any] | None, list[str]]:
    """Run the mirror if possible; return (JSON-ready results or None, report lines)."""
    ok, why = available()
    if not ok:
        return None, [f"Skipped: {why}"]
    result = run_mirror(tasks, size, seeds, policy=policy, progress=progress)
    higher = {"digits-mlp": True, "rl-sentiment": True}
    summary, lines = describe(result, higher)
    plot(result, out_dir)
    return {"summary": summary, "runs": result}, lines
