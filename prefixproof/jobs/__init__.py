"""Independent jobs on a local process pool (the default) or a Ray cluster (the optional `cluster` extra).

A job is a picklable top-level function and one JSON-able argument; `run_jobs` returns the results in
submission order, whichever backend ran them. Experiments (`prefixproof experiment run`) and fuzz shards
(`prefixproof fuzz --shards K`) use it.
"""
from prefixproof.jobs.runner import BACKENDS, JobError, run_jobs

__all__ = ["BACKENDS", "JobError", "run_jobs"]
