"""Framework adapters, installed as ``adaptive_sched.adapters``.

* ``adaptive_sched.adapters.torch``: :class:`AdaptiveScheduler` for PyTorch optimizers.

Each adapter imports its framework; importing this package imports none.
"""
