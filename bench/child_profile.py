"""Preloaded by the forkserver when `bench/step_profile.py --child-profile` runs: each step process
runs under cProfile and writes its stats to $STEPFLOW_CHILD_PROFILE/<pid>.prof."""

import cProfile
import os

import dagster._core.executor.child_process_executor as child

_run = child._execute_command_in_child_process


def _profiled(event_queue, command):  # type: ignore[no-untyped-def]
    profile = cProfile.Profile()
    try:
        profile.runcall(_run, event_queue, command)
    finally:
        profile.dump_stats(os.path.join(os.environ["STEPFLOW_CHILD_PROFILE"], f"{os.getpid()}.prof"))


child._execute_command_in_child_process = _profiled
