"""``adaptive-sched bench``: the adaptive schedules against the schedulers people use.

The suite (tasks, methods, statistics, report) is private to this subpackage;
the stable entry points are the console script ``adaptive-sched bench`` and
:mod:`adaptive_sched.bench._tasks` (``get_task``, ``TASK_NAMES``, ``Task.run``),
which the sweep command builds on. Importing this package imports neither JAX
nor matplotlib.
"""
