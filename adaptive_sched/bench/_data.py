"""The benchmark's data and constants: NumPy only (shared by the JAX tasks and the torch mirror).

Everything here is offline and deterministic: scikit-learn's bundled datasets
and docstrings of Python's standard library; nothing is downloaded.
"""

from __future__ import annotations

import importlib
import inspect
import itertools
import re
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np


def split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed random (train, test) index split of ``n`` items."""
    perm = np.random.default_rng(seed).permutation(n)
    n_test = round(n * test_fraction)
    return perm[n_test:], perm[:n_test]


DIGITS_SIZES: dict[str, dict[str, int]] = {
    "tiny": {"hidden": 32, "batch": 32, "steps": 40},
    "quick": {"hidden": 32, "batch": 32, "steps": 100},
    "default": {"hidden": 64, "batch": 32, "steps": 300},
    "full": {"hidden": 64, "batch": 32, "steps": 1200},
}


def digits_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's digits scaled to [0, 1]: ``(x_train, y_train, x_test, y_test)``, a fixed 75/25 split."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int32)
    train, test = split(len(y), 0.25, seed=0)
    return x[train], y[train], x[test], y[test]


LOGREG_SIZES: dict[str, dict[str, int]] = {
    "tiny": {"batch": 32, "steps": 40},
    "quick": {"batch": 32, "steps": 100},
    "default": {"batch": 32, "steps": 300},
    "full": {"batch": 32, "steps": 1000},
}
LOGREG_L2 = 1e-3


def breast_cancer_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's breast-cancer data standardised on the training part: a fixed 70/30 split."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    train, test = split(len(data.target), 0.3, seed=0)
    x = data.data.astype(np.float64)
    mu, sd = x[train].mean(0), x[train].std(0) + 1e-12
    x = ((x - mu) / sd).astype(np.float32)
    y = data.target.astype(np.float32)
    return x[train], y[train], x[test], y[test]


VOCAB: str = " abcdefghijklmnopqrstuvwxyz.,"
"""The characters of the char-lm; ``"."`` ends an RL sample."""
END = VOCAB.index(".")

TEXT_MODULES: tuple[str, ...] = (
    "argparse", "collections", "csv", "dataclasses", "datetime", "decimal", "difflib",
    "fractions", "functools", "heapq", "inspect", "itertools", "json", "logging", "pathlib",
    "pprint", "random", "re", "shutil", "statistics", "string", "textwrap", "unittest",
    "zipfile", "tarfile", "urllib.parse", "subprocess", "threading", "queue", "typing",
    "enum", "contextlib",
)  # fmt: skip


def stdlib_text(max_chars: int = 200_000) -> str:
    """Docstrings of a fixed list of standard-library modules, normalised to :data:`VOCAB`.

    Module, class, function and method docstrings (own ``__doc__`` only, each
    once), lower-cased; ``!?:;`` become ``"."``, other characters outside the
    vocabulary are dropped and whitespace collapses to one space. The text
    depends slightly on the Python version (docstrings change between releases).
    """
    docs: dict[str, None] = {}

    def add(obj: Any) -> None:
        doc = getattr(obj, "__doc__", None)
        if isinstance(doc, str) and doc.strip():
            docs[inspect.cleandoc(doc)] = None

    with warnings.catch_warnings():  # reading deprecated members (typing.io, ...) warns; harmless
        warnings.simplefilter("ignore", DeprecationWarning)
        for mod_name in TEXT_MODULES:
            mod = importlib.import_module(mod_name)
            add(mod)
            for name in sorted(vars(mod)):
                obj = vars(mod)[name]
                if name.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
                    continue
                add(obj)
                if inspect.isclass(obj):
                    for attr in sorted(vars(obj)):
                        member = vars(obj)[attr]
                        if not attr.startswith("_") and (callable(member) or isinstance(member, property)):
                            add(member)
    text = " ".join(docs).lower()
    text = re.sub(r"[!?:;]", ".", text)
    text = re.sub(r"\s+", " ", text)
    text = "".join(c for c in text if c in VOCAB)
    text = re.sub(r" +", " ", text)
    return text[:max_chars]


def encode(text: str) -> np.ndarray:
    """Characters of :data:`VOCAB` to int32 ids."""
    table = {c: i for i, c in enumerate(VOCAB)}
    return np.fromiter((table[c] for c in text), dtype=np.int32, count=len(text))


def decode(ids: Sequence[int]) -> str:
    """int ids to text."""
    return "".join(VOCAB[int(i)] for i in ids)


LM_SIZES: dict[str, dict[str, int]] = {
    "tiny": {"embed": 8, "hidden": 32, "seq": 16, "batch": 8, "steps": 40},
    "quick": {"embed": 16, "hidden": 48, "seq": 24, "batch": 16, "steps": 100},
    "default": {"embed": 16, "hidden": 32, "seq": 20, "batch": 8, "steps": 150},
    "full": {"embed": 16, "hidden": 48, "seq": 24, "batch": 16, "steps": 600},
}
LM_EVAL: dict[str, int] = {"windows": 16, "length": 48}
"""Held-out evaluation of the char-lm: evenly spaced windows of the held-out text."""


def lm_data() -> tuple[np.ndarray, np.ndarray]:
    """The encoded stdlib text: ``(train_ids, heldout_ids)``, the last 10% held out."""
    ids = encode(stdlib_text())
    n_eval = len(ids) // 10
    return ids[:-n_eval], ids[-n_eval:]


PRETRAIN_STEPS: dict[str, int] = {"tiny": 150, "quick": 300, "default": 600, "full": 1200}
PRETRAIN_LR = 1e-2
RL_SIZES: dict[str, dict[str, int]] = {
    "tiny": {"batch": 8, "gen": 14, "steps": 40, "eval_batch": 32},
    "quick": {"batch": 16, "gen": 12, "steps": 60, "eval_batch": 64},
    "default": {"batch": 8, "gen": 12, "steps": 150, "eval_batch": 64},
    "full": {"batch": 16, "gen": 16, "steps": 300, "eval_batch": 128},
}
KL_BETA = 0.05
KL_TARGET = 6.0  # nats per sample: the KL budget of the ``ours-kl`` preset (constant-lr runs reach 6-10 here; 2 kept cutting the lr)
LENGTH_TARGET = 8
PROMPTS: dict[str, str] = {"rl-sentiment": "this is ", "rl-length": "returns "}

POSITIVE_WORDS: tuple[str, ...] = (
    "good", "great", "nice", "best", "better", "love", "like", "happy", "easy", "clear",
    "safe", "true", "well", "fine", "simple", "useful", "success", "correct", "valid", "enjoy",
)  # fmt: skip
NEGATIVE_WORDS: tuple[str, ...] = (
    "bad", "error", "fail", "failed", "wrong", "invalid", "not", "none", "never", "raise",
    "exception", "warning", "unable", "broken", "lost", "deprecated", "ignore", "empty",
)  # fmt: skip


def sentiment_weights() -> np.ndarray:
    """The fixed bigram "sentiment" classifier: a (vocab, vocab) weight table.

    ``W[a, b] = #(bigram ab in POSITIVE_WORDS) - #(ab in NEGATIVE_WORDS)``,
    counting each word's bigrams including the word boundaries (space before
    and after), then divided by the largest absolute entry. A sample's score is
    ``tanh(sum_t W[x_t, x_{t+1}] / 2)`` over its characters.
    """
    idx = {c: i for i, c in enumerate(VOCAB)}
    w = np.zeros((len(VOCAB), len(VOCAB)), np.float64)
    for sign, words in ((1.0, POSITIVE_WORDS), (-1.0, NEGATIVE_WORDS)):
        for word in words:
            padded = f" {word} "
            for a, b in itertools.pairwise(padded):
                w[idx[a], idx[b]] += sign
    return (w / np.abs(w).max()).astype(np.float32)
