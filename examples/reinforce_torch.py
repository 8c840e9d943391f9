"""Plain-PyTorch REINFORCE with the lr driven by the reward and the KL to the initial policy (no TRL).

A contextual bandit: the policy sees one of 8 contexts and picks one of 16
actions; action ``(3 * context) % 16`` earns reward 1, the others 0 (plus
noise). REINFORCE with a running-mean baseline trains it; ``AdaptiveScheduler``
raises the lr while the smoothed reward improves (``reward_rule="trend"``) and
lowers it while the KL to the initial policy overshoots its target
(``kl_rule="target"``). A few seconds on a CPU::

    python examples/reinforce_torch.py --steps 300
"""

from __future__ import annotations

import argparse
import copy
from typing import Any

import torch

from adaptive_sched import AdaptiveScheduler

N_CONTEXTS, N_ACTIONS = 8, 16


def main(steps: int = 300, batch: int = 64, seed: int = 0, verbose: bool = True) -> dict[str, Any]:
    """Train for ``steps`` policy-gradient steps; return the reward, KL and lr of every step."""
    torch.manual_seed(seed)
    policy = torch.nn.Sequential(torch.nn.Embedding(N_CONTEXTS, 32), torch.nn.Tanh(), torch.nn.Linear(32, N_ACTIONS))
    reference = copy.deepcopy(policy).requires_grad_(False)  # the initial policy, for the KL
    optimizer = torch.optim.Adam(policy.parameters(), lr=3e-3)
    sched = AdaptiveScheduler(
        optimizer,
        reward_rule="trend",
        reward_up=1.02,
        reward_down=0.99,
        kl_rule="target",
        kl_target=1.0,
        kl_gain=0.05,
        kl_clip=1.0,
        min_lr=3e-4,
        max_lr=3e-2,
    )
    hist: dict[str, list[float]] = {"reward": [], "kl": [], "lr": []}
    baseline = 0.0
    for step in range(steps):
        ctx = torch.randint(0, N_CONTEXTS, (batch,))
        logits = policy(ctx)
        dist = torch.distributions.Categorical(logits=logits)
        action = dist.sample()
        reward = (action == (3 * ctx) % N_ACTIONS).float() + 0.1 * torch.randn(batch)
        advantage = reward - baseline
        loss = -(advantage * dist.log_prob(action)).mean()
        with torch.no_grad():  # KL(policy || reference), averaged over the batch's contexts
            ref_logp = torch.log_softmax(reference(ctx), dim=-1)
            logp = torch.log_softmax(logits, dim=-1)
            kl = (logp.exp() * (logp - ref_logp)).sum(-1).mean()
        hist["lr"].append(sched.get_last_lr()[0])  # the lr this step uses
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        r = reward.mean().item()
        sched.observe(R=r, kl=kl)  # one controller update per optimizer step
        baseline = 0.9 * baseline + 0.1 * r
        hist["reward"].append(r)
        hist["kl"].append(kl.item())
        if verbose and (step + 1) % max(1, steps // 10) == 0:
            print(f"step {step + 1:4d}  reward {r:.3f}  kl {kl.item():.3f}  lr {hist['lr'][-1]:.2e}")
    return {**hist, "scheduler": sched}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    main(steps=a.steps, seed=a.seed)
