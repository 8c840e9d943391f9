"""Framework adapters, installed as ``adaptive_sched.adapters``.

* ``adaptive_sched.adapters.torch``: :class:`AdaptiveScheduler` for PyTorch optimizers.
* ``adaptive_sched.adapters.hf``: a ``transformers.TrainerCallback`` (Trainer, TRL) and a setup helper.
* ``adaptive_sched.adapters.lightning``: a Lightning ``Callback``.

Each adapter imports its framework; importing this package imports none.
"""
