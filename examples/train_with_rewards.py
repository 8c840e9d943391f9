"""RL fine-tuning with TRL's GRPOTrainer, the learning rate driven by the reward and the KL.

Everything is local: a tiny Llama-style causal LM built from a config in code,
a character-level tokenizer built with the ``tokenizers`` library, and a
programmatic reward (the share of the letter "a" in the completion). No hub
download happens (``HF_HUB_OFFLINE=1``). About a minute on 2 CPU cores::

    python examples/train_with_rewards.py            # --steps 30 --beta 0.04

The offline recipe. With ``beta > 0`` GRPO builds its reference model with
``from_pretrained(model.config._name_or_path)`` (trl/trainer/grpo_trainer.py:1003),
so a model built from a config must first be saved to a local directory and
loaded from there (:func:`build_tiny_lm`); ``GRPOConfig(use_cpu=True)`` runs
it on a CPU-only machine.

The scheduler: ``reward_rule="trend"`` raises the lr by ``reward_up`` per
logged step while the smoothed reward improves and lowers it by
``reward_down`` otherwise; ``kl_rule="target"`` lowers it while the KL to the
reference model is above ``kl_target`` and raises it while far below. The
Trainer calls ``scheduler.step()`` after each optimizer step and the callback
feeds each logged reward and KL to ``scheduler.observe`` (see
``adaptive_sched.adapters.hf``).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach the hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch

CHARS = "abcdefgh "
PROMPTS = ["ab", "ba", "ca", "ad", "he", "fg", "eh", "gd"]


def build_tokenizer() -> Any:
    """A character-level tokenizer built locally with the ``tokenizers`` library."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2}
    for c in CHARS:
        vocab[c] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")  # one token per character
    tok.decoder = decoders.Fuse()
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    hf_tok.padding_side = "left"  # generation pads prompts on the left
    return hf_tok


def build_tiny_lm(directory: str | Path, seed: int = 0) -> Path:
    """Build a tiny causal LM from a config, save it with its tokenizer to ``directory``; return the directory.

    Saving is what makes ``beta > 0`` work offline: TRL loads the reference
    model from ``model.config._name_or_path``, which is this directory once
    the model is loaded back with ``from_pretrained(directory)``.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    directory = Path(directory)
    tok = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


def reward_a(completions: list[str], **kwargs: Any) -> list[float]:
    """The programmatic reward: the share of "a" among the completion's characters (0 for an empty one)."""
    return [c.count("a") / len(c) if c else 0.0 for c in completions]


def main(
    steps: int = 30,
    beta: float = 0.04,
    logging_steps: int = 1,
    seed: int = 0,
    out_dir: str | Path | None = None,
    verbose: bool = True,
) -> dict[str, Any]:
    """Train for ``steps`` GRPO steps; return the logged reward, KL and lr per logged step and the trainer."""
    import datasets
    from transformers import LlamaForCausalLM, PrinterCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from adaptive_sched.adapters.hf import adaptive_trainer_setup

    work = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="train_with_rewards-"))
    model_dir = build_tiny_lm(work / "tiny-lm", seed=seed)
    model = LlamaForCausalLM.from_pretrained(model_dir)  # config._name_or_path = model_dir (offline ref model)
    tokenizer = build_tokenizer()
    args = GRPOConfig(
        output_dir=str(work / "run"),
        max_steps=steps,
        learning_rate=1e-2,
        per_device_train_batch_size=8,
        num_generations=4,  # completions per prompt: 2 prompts per step
        max_completion_length=12,
        beta=beta,
        logging_steps=logging_steps,
        save_strategy="no",
        use_cpu=True,  # GRPOConfig needs it on a CPU-only machine
        report_to=[],
        disable_tqdm=True,
        seed=seed,
    )
    setup = adaptive_trainer_setup(
        model,
        args,
        reward_rule="trend",
        reward_up=1.05,
        reward_down=0.97,
        ema_reward_beta=0.5,
        kl_rule="target" if beta > 0 else "none",
        kl_target=0.5,
        kl_gain=0.1,
        kl_clip=1.0,
        min_lr=1e-3,
        max_lr=5e-2,
    )
    history: dict[str, list[Any]] = {"step": [], "reward": [], "kl": [], "lr": []}

    class Print(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if not logs or "reward" not in logs:
                return
            history["step"].append(state.global_step)
            history["reward"].append(logs["reward"])
            history["kl"].append(logs.get("kl"))
            history["lr"].append(logs["learning_rate"])  # the lr this step used
            if verbose:
                kl = logs.get("kl")
                print(
                    f"step {state.global_step:3d}  reward {_fmt(logs['reward'])}  kl {_fmt(kl)}  "
                    f"lr {logs['learning_rate']:.3e}"
                )

    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward_a,
        args=args,
        train_dataset=datasets.Dataset.from_dict({"prompt": PROMPTS * max(1, steps)}),
        processing_class=tokenizer,
        optimizers=setup.optimizers,
        callbacks=[Print()],
    )
    setup.attach(trainer)  # before the Trainer's reporting callbacks
    trainer.remove_callback(PrinterCallback)  # the lines above replace its dict dumps
    trainer.train()
    sched = setup.scheduler
    if verbose:
        print(f"final lr {sched.get_last_lr()[0]:.3e}; controller steps {sched.controller_state.step}")
    return {**history, "trainer": trainer, "scheduler": sched, "callback": setup.callback}


def _fmt(v: Any) -> str:
    return "  n/a " if v is None else f"{v:.4f}"


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--beta", type=float, default=0.04, help="KL coefficient (0: no reference model, no KL)")
    p.add_argument("--logging-steps", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", default=None)
    a = p.parse_args()
    main(steps=a.steps, beta=a.beta, logging_steps=a.logging_steps, seed=a.seed, out_dir=a.out_dir)
