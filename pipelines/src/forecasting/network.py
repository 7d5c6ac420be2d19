"""The embedding network member (PyTorch): kept for ``TrainConfig.members`` that ask for it
and for models registered with it. Only importing this module imports torch."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import metrics
from .features import CATEGORICAL, RATIO_CLIP
from .models import Diverged, InputGuard, TrainConfig, _LegacyLasso, bounded, scale_of


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


class _NetMember:
    name = "nn"

    def __init__(self, numeric: Sequence[str], config: TrainConfig) -> None:
        self.guard = InputGuard(numeric)
        self.config = config
        self.vocab: dict[str, dict[str, int]] = {}
        self.net: EmbeddingNet | None = None
        self.epochs = 0
        self.fixed_epochs: int | None = None
        self.validation_curve: list[float] = []

    def _cats(self, frame: pd.DataFrame) -> torch.Tensor:
        columns = [
            frame[name].astype(str).map(self.vocab[name]).fillna(0).astype(np.int64).to_numpy()
            for name in CATEGORICAL
        ]
        return torch.from_numpy(np.stack(columns, axis=1))

    def _nums(self, frame: pd.DataFrame) -> torch.Tensor:
        return torch.from_numpy(self.guard.transform(frame).astype(np.float32))

    def _forward(self, net: EmbeddingNet, frame: pd.DataFrame) -> np.ndarray:
        net.eval()
        with torch.no_grad():
            ratio = net(self._cats(frame), self._nums(frame)).numpy().astype(np.float64)
        net.train()
        values: np.ndarray = np.clip(ratio, *RATIO_CLIP) * scale_of(frame)
        return values

    def fit(self, train: pd.DataFrame, validation: pd.DataFrame | None) -> None:
        config = self.config
        self.guard.fit(train)
        self.vocab = {
            name: {v: i + 1 for i, v in enumerate(sorted(train[name].astype(str).unique()))}
            for name in CATEGORICAL
        }
        torch.manual_seed(config.seed)
        generator = torch.Generator().manual_seed(config.seed)
        net = EmbeddingNet(
            [len(self.vocab[n]) for n in CATEGORICAL], len(self.guard.used), config.hidden
        )
        cats, nums = self._cats(train), self._nums(train)
        y = torch.from_numpy(train["target_ratio"].to_numpy(dtype=np.float32))
        optimiser = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
        loss_fn = nn.L1Loss()  # median-seeking: what percentage errors reward
        rows = len(train)
        epochs = self.fixed_epochs or config.epochs_for(rows)
        watch = validation is not None and self.fixed_epochs is None and len(validation) > 0
        best, best_state, best_epoch, waited = math.inf, None, 0, 0
        self.validation_curve = []
        for epoch in range(1, epochs + 1):
            order = torch.randperm(rows, generator=generator)
            for start in range(0, rows, config.batch_size):
                idx = order[start : start + config.batch_size]
                optimiser.zero_grad()
                loss = loss_fn(net(cats[idx], nums[idx]), y[idx])
                if not torch.isfinite(loss):
                    raise Diverged(f"training loss is not finite in epoch {epoch}")
                loss.backward()
                # Bounded steps: one batch of extreme ratios cannot throw the weights away.
                nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                optimiser.step()
            if not watch:
                continue
            assert validation is not None
            forecast = bounded(self._forward(net, validation), validation)
            score = metrics.mape(validation["quantity"], forecast)
            score = score if math.isfinite(score) else math.inf
            self.validation_curve.append(score)
            if score < best - 1e-6:
                best, best_epoch, waited = score, epoch, 0
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                waited += 1
                if waited >= config.patience:
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
            self.epochs = best_epoch
        else:
            self.epochs = epochs
        net.eval()
        self.net = net

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        assert self.net is not None
        return self._forward(self.net, frame)

    def settings(self) -> dict[str, Any]:
        return {
            "epochs": self.epochs,
            "validation_curve": [round(v, 4) for v in self.validation_curve],
            "dropped_inputs": self.guard.dropped,
        }


class _LegacyNet(_LegacyLasso):
    name = "nn"

    def __init__(self, state: dict[str, Any]) -> None:
        super().__init__(None, state["numeric"])
        self.net, self.vocab = state["net"], state["vocab"]
        self.mean, self.std = state["num_mean"], state["num_std"]

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        cats = np.stack(
            [
                frame[n].astype(str).map(self.vocab[n]).fillna(0).astype(np.int64).to_numpy()
                for n in CATEGORICAL
            ],
            axis=1,
        )
        x = (frame[self.numeric].to_numpy(dtype=np.float64) - self.mean) / self.std
        with torch.no_grad():
            ratio = self.net(torch.from_numpy(cats), torch.from_numpy(x.astype(np.float32)))
        values: np.ndarray = np.clip(ratio.numpy(), *RATIO_CLIP) * scale_of(frame)
        return values
