"""Seeded training runs of the long-term-dependency tasks and the remedies' models.

TrainConfig    one run's configuration, checked field by field (`config.py`)
train          the run itself, monitored, with the exact gradient flow before and after
               (`train.py`); returns a `gradtrace.records.TrainRun`
run_config     the same from a dict, returning the record's dict: a sweep worker's call
exact_flow     the exact flow of a model's first recurrent layer (`exact.py`)
"""

from gradtrace.training.config import TrainConfig
from gradtrace.training.exact import exact_flow
from gradtrace.training.train import run_config, train

__all__ = ["TrainConfig", "exact_flow", "run_config", "train"]
