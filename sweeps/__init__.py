"""Sweep library: experiment sets (experiments/*.py) and running them one process per run.

API for experiment-set files: `Run(name, config, overrides={})`, module-level `EXPERIMENTS`
(or `get_experiments()`) and optional `SEEDS`. See sweeps.experiments for details and
sweep.py for the command line.
"""

from sweeps.experiments import (ExperimentSet, ExperimentSetError, Run, load_experiment_set,
                                resolve_seeds, select_runs)
from sweeps.overrides import format_value, parse_set_args
from sweeps.runner import (DEFAULT_TRAIN_SCRIPT, Job, JobResult, SweepRunner, build_command,
                           job_state, plan_jobs)

__all__ = ["DEFAULT_TRAIN_SCRIPT", "ExperimentSet", "ExperimentSetError", "Job", "JobResult",
           "Run", "SweepRunner", "build_command", "format_value", "job_state",
           "load_experiment_set", "parse_set_args", "plan_jobs", "resolve_seeds", "select_runs"]
