"""The per-segment forecaster: historical average, LASSO, an embedding network, and their ensemble.

All models predict the ratio of quantity to the series' historical mean (see ``features``);
predictions are turned back into quantities and floored at zero. The ensemble is the mean of
the LASSO and the network. Training is deterministic for a given seed and small enough for
two CPU cores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import Lasso
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from .features import CATEGORICAL, RATIO_CLIP, numeric_features

COMPONENTS = ("baseline", "lasso", "nn", "ensemble")


class EmbeddingNet(nn.Module):
    """One ``nn.Embedding`` per categorical column, concatenated with the numeric features,
    then a small MLP to one output."""

    def __init__(self, cardinalities: Sequence[int], n_numeric: int, hidden: int = 64) -> None:
        super().__init__()
        dims = [min(16, (c + 1) // 2 + 1) for c in cardinalities]
        # Index 0 of every embedding is "unseen in training".
        self.embeddings = nn.ModuleList(
            nn.Embedding(c + 1, d) for c, d in zip(cardinalities, dims, strict=True)
        )
        self.mlp = nn.Sequential(
            nn.Linear(sum(dims) + n_numeric, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden // 2),
            nn.ReLU(),
            nn.Linear(hidden // 2, 1),
        )

    def forward(self, cats: torch.Tensor, nums: torch.Tensor) -> torch.Tensor:
        parts = [emb(cats[:, i]) for i, emb in enumerate(self.embeddings)]
        return self.mlp(torch.cat([*parts, nums], dim=1)).squeeze(1)  # type: ignore[no-any-return]


@dataclass
class TrainConfig:
    lasso_alpha: float = 0.001
    hidden: int = 64
    epochs: int | None = None  # None: chosen from the row count
    batch_size: int = 512
    learning_rate: float = 3e-3
    seed: int = 0
    max_updates: int = 3000

    def epochs_for(self, rows: int) -> int:
        if self.epochs is not None:
            return self.epochs
        batches = max(1, rows // self.batch_size)
        return int(min(60, max(4, self.max_updates // batches)))


class SegmentForecaster:
    """Fit on a feature frame (``features.build_features`` with a quantity), predict on another."""

    def __init__(self, exog: Sequence[str] = (), config: TrainConfig | None = None) -> None:
        self.exog = list(exog)
        self.numeric = numeric_features(self.exog)
        self.config = config or TrainConfig()
        self.vocab: dict[str, dict[str, int]] = {}
        self.lasso: Pipeline | None = None
        self.net: EmbeddingNet | None = None
        self.num_mean = np.zeros(len(self.numeric))
        self.num_std = np.ones(len(self.numeric))
        self.trained_rows = 0

    # -- encoding -------------------------------------------------------------------------

    def _cats(self, frame: pd.DataFrame) -> torch.Tensor:
        columns = []
        for name in CATEGORICAL:
            mapping = self.vocab[name]
            values = frame[name].astype(str).map(mapping).fillna(0).astype(np.int64).to_numpy()
            columns.append(values)
        return torch.from_numpy(np.stack(columns, axis=1))

    def _nums(self, frame: pd.DataFrame) -> np.ndarray:
        values: np.ndarray = frame[self.numeric].to_numpy(dtype=np.float64)
        return values

    # -- training -------------------------------------------------------------------------

    def fit(self, frame: pd.DataFrame) -> SegmentForecaster:
        if frame.empty:
            raise ValueError("cannot train on an empty frame")
        target = frame["target_ratio"].to_numpy(dtype=np.float64)
        x = self._nums(frame)
        self.lasso = make_pipeline(StandardScaler(), Lasso(alpha=self.config.lasso_alpha))
        self.lasso.fit(x, target)

        self.vocab = {
            name: {v: i + 1 for i, v in enumerate(sorted(frame[name].astype(str).unique()))}
            for name in CATEGORICAL
        }
        self.num_mean = x.mean(axis=0)
        self.num_std = np.where(x.std(axis=0) > 1e-9, x.std(axis=0), 1.0)
        torch.manual_seed(self.config.seed)
        generator = torch.Generator().manual_seed(self.config.seed)
        net = EmbeddingNet(
            [len(self.vocab[n]) for n in CATEGORICAL], len(self.numeric), self.config.hidden
        )
        cats = self._cats(frame)
        nums = torch.from_numpy(((x - self.num_mean) / self.num_std).astype(np.float32))
        y = torch.from_numpy(target.astype(np.float32))
        optimiser = torch.optim.Adam(net.parameters(), lr=self.config.learning_rate)
        loss_fn = nn.L1Loss()  # median-seeking: what percentage errors reward
        rows = len(frame)
        for _ in range(self.config.epochs_for(rows)):
            order = torch.randperm(rows, generator=generator)
            for start in range(0, rows, self.config.batch_size):
                idx = order[start : start + self.config.batch_size]
                optimiser.zero_grad()
                loss = loss_fn(net(cats[idx], nums[idx]), y[idx])
                loss.backward()
                optimiser.step()
        net.eval()
        self.net = net
        self.trained_rows = rows
        return self

    # -- prediction -----------------------------------------------------------------------

    def predict_components(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Quantity forecasts of every component (columns ``COMPONENTS``), index of ``frame``."""
        if self.lasso is None or self.net is None:
            raise RuntimeError("the forecaster is not trained")
        scale = frame["series_mean"].clip(lower=1.0).to_numpy()
        x = self._nums(frame)
        lasso_ratio = np.clip(self.lasso.predict(x), *RATIO_CLIP)
        with torch.no_grad():
            nums = torch.from_numpy(((x - self.num_mean) / self.num_std).astype(np.float32))
            nn_ratio = np.clip(self.net(self._cats(frame), nums).numpy(), *RATIO_CLIP)
        out = pd.DataFrame(index=frame.index)
        out["baseline"] = frame["series_mean"].clip(lower=0.0).to_numpy()
        out["lasso"] = lasso_ratio * scale
        out["nn"] = nn_ratio * scale
        out["ensemble"] = (out["lasso"] + out["nn"]) / 2.0
        return out

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        values: np.ndarray = self.predict_components(frame)["ensemble"].to_numpy()
        return values

    def describe(self) -> dict[str, Any]:
        return {
            "numeric_features": self.numeric,
            "categorical_features": list(CATEGORICAL),
            "trained_rows": self.trained_rows,
            "vocab_sizes": {k: len(v) for k, v in self.vocab.items()},
        }
