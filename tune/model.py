"""The tuner's cost model: XGBoost trained on measured kernels, one model per kernel kind and target.

It learns *relative* speed: each record's target is log(default ms / ms) of its own task, so records
of tasks with very different sizes train one model (a new task starts with what the others taught),
and its predictions rank a task's candidates. AutoTVM's design, on gearshift's knobs: measure a
batch, retrain, score every unmeasured setting, measure the most promising (plus a few at random).
"""

from __future__ import annotations

import math

import numpy as np

MIN_RECORDS = 8  # below this the model does not rank: candidates are picked at random


class CostModel:
    """XGBoost regression of log speedup over the task's default, from `knobs.features` vectors."""

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.booster = None

    @property
    def ready(self) -> bool:
        return self.booster is not None

    def fit(self, rows: list[list[float]], speedups: list[float]) -> None:
        """Train on feature rows and their measured speedups over their task's default."""
        if len(rows) < MIN_RECORDS or len(set(np.round(speedups, 6))) < 2:
            return
        import xgboost as xgb

        model = xgb.XGBRegressor(n_estimators=120, max_depth=5, learning_rate=0.15, subsample=0.9,
                                 min_child_weight=1, random_state=self.seed, n_jobs=1, verbosity=0)
        model.fit(np.asarray(rows, np.float64), np.log(np.asarray(speedups, np.float64)))
        self.booster = model

    def predict(self, rows: list[list[float]]) -> np.ndarray:
        """Predicted log speedup over the default (higher: faster); zeros before the first fit."""
        if self.booster is None or not rows:
            return np.zeros(len(rows))
        return self.booster.predict(np.asarray(rows, np.float64))


def spearman(a, b) -> float:
    """Spearman rank correlation of two sequences (average ranks for ties)."""
    ra, rb = _ranks(np.asarray(a, np.float64)), _ranks(np.asarray(b, np.float64))
    if len(ra) < 2 or ra.std() == 0 or rb.std() == 0:
        return math.nan
    return float(np.corrcoef(ra, rb)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x), dtype=np.float64)
    for value in np.unique(x):  # ties share their average rank
        tied = x == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks
