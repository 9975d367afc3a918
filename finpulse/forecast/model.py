"""The LSTM forecaster (a plain torch module), its losses, and its on-disk format.

On disk a model is a folder: ``model.pt`` (state dict) and ``meta.json`` (config, feature list,
scaler, ticker index, version). :func:`load_forecaster` reads it (or a registry spec through
:mod:`finpulse.tracking`) without Ray, so serving and notebooks need only torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from finpulse.forecast.calibration import IntervalCalibration, tracked_offsets, widen
from finpulse.forecast.config import ForecastConfig
from finpulse.forecast.windows import UNKNOWN_TICKER, Scaler, prepare_frame, window_vol

FORMAT_VERSION = 1
STATE_FILE = "model.pt"
META_FILE = "meta.json"


class LSTMForecaster(nn.Module):
    """LSTM over the lookback window; the last hidden state plus a ticker embedding feeds two heads:
    a point forecast of the (scaled) next-day return and one output per quantile."""

    def __init__(self, n_features: int, n_tickers: int, hidden_size: int = 32, num_layers: int = 1,
                 dropout: float = 0.1, embedding_dim: int = 4, quantiles: tuple[float, ...] = (0.05, 0.5, 0.95)):
        super().__init__()
        self.quantiles = tuple(quantiles)
        self.embedding = nn.Embedding(n_tickers + 1, embedding_dim)  # row 0: unknown ticker
        self.lstm = nn.LSTM(n_features, hidden_size, num_layers=num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.point_head = nn.Linear(hidden_size + embedding_dim, 1)
        self.quantile_head = nn.Linear(hidden_size + embedding_dim, len(self.quantiles))
        with torch.no_grad():  # targets are scaled to unit std: start each quantile at the normal's
            normal = torch.distributions.Normal(0.0, 1.0)
            self.quantile_head.bias.copy_(normal.icdf(torch.tensor(self.quantiles, dtype=torch.float32)))

    def forward(self, x: torch.Tensor, ticker_idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, _ = self.lstm(x)
        h = torch.cat([self.dropout(out[:, -1, :]), self.embedding(ticker_idx)], dim=1)
        return self.point_head(h).squeeze(-1), self.quantile_head(h)


def pinball_loss(pred: torch.Tensor, target: torch.Tensor, quantiles: tuple[float, ...]) -> torch.Tensor:
    """Mean quantile (pinball) loss; ``pred`` is (n, q), ``target`` (n,)."""
    q = torch.as_tensor(quantiles, dtype=pred.dtype, device=pred.device)
    diff = target.unsqueeze(1) - pred
    return torch.maximum(q * diff, (q - 1) * diff).mean()


def forecast_loss(point: torch.Tensor, quant: torch.Tensor, target: torch.Tensor, config: ForecastConfig) -> torch.Tensor:
    """Point loss + weighted pinball loss: one objective trains both heads."""
    if config.point_loss == "mse":
        p = nn.functional.mse_loss(point, target)
    elif config.point_loss == "l1":
        p = nn.functional.l1_loss(point, target)
    else:
        p = nn.functional.huber_loss(point, target, delta=1.0)
    return p + config.quantile_weight * pinball_loss(quant, target, config.quantiles)


def build_model(config: ForecastConfig, n_features: int, n_tickers: int) -> LSTMForecaster:
    torch.manual_seed(config.seed)
    return LSTMForecaster(n_features, n_tickers, config.hidden_size, config.num_layers, config.dropout,
                          config.embedding_dim, tuple(config.quantiles))


@torch.no_grad()
def predict_arrays(model: nn.Module, x: np.ndarray, ticker_idx: np.ndarray, target_scale: float,
                   batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Unscaled (point return, sorted quantile returns) for windows; quantiles are sorted so they never cross."""
    model.eval()
    points, quants = [], []
    for i in range(0, len(x), batch_size):
        p, q = model(torch.from_numpy(np.ascontiguousarray(x[i:i + batch_size])),
                     torch.from_numpy(ticker_idx[i:i + batch_size]))
        points.append(p.numpy())
        quants.append(np.sort(q.numpy(), axis=1))
    if not points:
        return np.zeros(0), np.zeros((0, len(getattr(model, "quantiles", (0.05, 0.5, 0.95)))))
    return np.concatenate(points) * target_scale, np.concatenate(quants) * target_scale


def save_forecaster(folder: str | Path, model: nn.Module, config: ForecastConfig, scaler: Scaler,
                    tickers: dict[str, int], extra: dict[str, Any] | None = None,
                    calibration: IntervalCalibration | None = None) -> Path:
    """Write the model folder (state dict + meta JSON). ``extra`` lands in meta (e.g. training metrics);
    ``calibration`` is the interval's conformal correction, applied by every predict path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    module = getattr(model, "module", model)  # unwrap DDP
    torch.save(module.state_dict(), folder / STATE_FILE)
    meta = {
        "format_version": FORMAT_VERSION,
        "config": json.loads(config.model_dump_json()),
        "feature_columns": list(scaler.columns),
        "scaler": scaler.to_dict(),
        "tickers": tickers,
        "interval_calibration": (calibration or IntervalCalibration(config.interval_level)).to_dict(),
        "extra": extra or {},
    }
    (folder / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
    return folder


@dataclass(frozen=True)
class PreparedRows:
    """One ticker's complete feature rows, scaled: ``x[i]`` came from source row ``rows[i]``."""

    ticker: str
    x: np.ndarray
    rows: np.ndarray
    dates: list
    closes: np.ndarray
    offsets: np.ndarray | None = None  # the interval's tracked widening for a window ending on row i


@dataclass(frozen=True)
class Window:
    """One model input: ``lookback`` scaled rows ending on ``as_of`` (close ``close``)."""

    x: np.ndarray
    ticker_idx: int
    ticker: str
    as_of: Any
    close: float
    offset: float = 0.0  # tracked widening of the interval (see calibration.tracked_offsets)


@dataclass
class LoadedForecaster:
    """A trained forecaster ready to predict from DAILY_FEATURES rows (no Ray needed)."""

    model: LSTMForecaster
    config: ForecastConfig
    scaler: Scaler
    ticker_index: dict[str, int]
    version: str = "local"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def lookback(self) -> int:
        return self.config.lookback

    @property
    def feature_columns(self) -> list[str]:
        return list(self.scaler.columns)

    @property
    def tickers(self) -> list[str]:
        return sorted(self.ticker_index)

    @property
    def level(self) -> float:
        return self.config.interval_level

    @property
    def calibration(self) -> IntervalCalibration:
        return IntervalCalibration.from_dict(self.meta.get("interval_calibration"), self.level)

    def predict_intervals(self, x: np.ndarray, ticker_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(point, low, high) log returns for windows, the interval calibrated as saved with the model."""
        point, quant = predict_arrays(self.model, x, ticker_idx, self.scaler.target_scale)
        low, high = self.calibration.apply(quant[:, 0], quant[:, -1], window_vol(x, self.scaler))
        return point, low, high

    def prepare(self, history: pd.DataFrame) -> PreparedRows:
        """One ticker's rows, cleaned and scaled once. Serving prepares each ticker's whole feature
        history at load time and slices windows from it per request (:meth:`window_at`)."""
        tickers = history["ticker"].unique()
        if len(tickers) != 1:
            raise ValueError(f"history must hold one ticker, got {list(tickers)}")
        history = history.sort_values("date", kind="stable")
        frame = prepare_frame(history.assign(_row=np.arange(len(history))), self.feature_columns)
        x = self.scaler.transform(frame)
        targets = frame["target_ret_1d"].to_numpy(dtype=float) if "target_ret_1d" in frame else np.full(len(frame), np.nan)
        return PreparedRows(ticker=str(tickers[0]), x=x, rows=frame["_row"].to_numpy(), dates=frame["date"].tolist(),
                            closes=frame["close"].to_numpy(dtype=float),
                            offsets=self._offsets(str(tickers[0]), x, frame["date"].tolist(), targets))

    def _offsets(self, ticker: str, x: np.ndarray, dates: list, targets: np.ndarray) -> np.ndarray:
        """Per row, the interval's online widening from the model's first unseen day on: each realised
        next-day return (``target_ret_1d``, known once the next close is) updates it for later rows."""
        out = np.zeros(len(x))
        start = (self.meta.get("extra") or {}).get("seen_before")
        cal, n = self.calibration, len(x) - self.lookback + 1
        if cal.step <= 0 or not start or n <= 0:
            return out
        as_of = np.array(dates[self.lookback - 1:], dtype=object)
        todo = np.flatnonzero(as_of >= pd.Timestamp(start).date())
        if len(todo) == 0:
            return out
        win = np.lib.stride_tricks.sliding_window_view(x, (self.lookback, x.shape[1]))[:, 0][todo]
        idx = np.full(len(todo), self.ticker_index.get(ticker, UNKNOWN_TICKER), dtype=np.int64)
        _, low, high = self.predict_intervals(np.ascontiguousarray(win), idx)
        rows = todo + self.lookback - 1
        out[rows] = tracked_offsets(low, high, targets[rows], cal.level, cal.step)
        return out

    def window_at(self, prepared: PreparedRows, end: int, start: int = 0) -> Window:
        """The window of the last ``lookback`` complete rows among source rows ``start..end-1``."""
        k = int(np.searchsorted(prepared.rows, end, side="left"))
        have = k - int(np.searchsorted(prepared.rows, start, side="left"))
        if have < self.lookback:
            raise ValueError(f"need at least {self.lookback} complete rows, got {have}")
        return Window(prepared.x[k - self.lookback : k], self.ticker_index.get(prepared.ticker, UNKNOWN_TICKER),
                      prepared.ticker, prepared.dates[k - 1], float(prepared.closes[k - 1]),
                      float(prepared.offsets[k - 1]) if prepared.offsets is not None else 0.0)

    def window(self, history: pd.DataFrame) -> Window:
        """The window ending on the last day of one ticker's ``history``."""
        return self.window_at(self.prepare(history), len(history))

    def predict_windows(self, windows: list[Window]) -> list[dict]:
        """One forecast per window, in one model pass."""
        if not windows:
            return []
        x = np.stack([w.x for w in windows])
        idx = np.array([w.ticker_idx for w in windows], dtype=np.int64)
        point, low, high = self.predict_intervals(x, idx)
        low, high = widen(low, high, np.array([w.offset for w in windows]))
        return [{"ticker": w.ticker, "as_of": w.as_of, "predicted_return": float(p),
                 "predicted_close": float(w.close * np.exp(p)), "low": float(w.close * np.exp(lo)),
                 "high": float(w.close * np.exp(hi)), "level": self.level}
                for w, p, lo, hi in zip(windows, point, low, high, strict=True)]

    def predict_history(self, history: pd.DataFrame) -> pd.DataFrame:
        """Forecasts (``date``, ``pred``, ``low``, ``high``: log returns) for every day of one ticker's
        ``history`` that ends a full window: what serving answers for each as-of day."""
        prepared = self.prepare(history)
        n, lb = len(prepared.x), self.lookback
        if n < lb:
            return pd.DataFrame(columns=["date", "pred", "low", "high"])
        win = np.ascontiguousarray(np.lib.stride_tricks.sliding_window_view(prepared.x, (lb, prepared.x.shape[1]))[:, 0])
        idx = np.full(len(win), self.ticker_index.get(prepared.ticker, UNKNOWN_TICKER), dtype=np.int64)
        point, low, high = self.predict_intervals(win, idx)
        low, high = widen(low, high, prepared.offsets[lb - 1:])
        return pd.DataFrame({"date": prepared.dates[lb - 1:], "pred": point, "low": low, "high": high})

    def predict_batch(self, histories: list[pd.DataFrame]) -> list[dict]:
        """One forecast per history (each: one ticker's rows up to and including the as-of day)."""
        return self.predict_windows([self.window(h) for h in histories])

    def predict_next(self, history: pd.DataFrame) -> dict:
        return self.predict_batch([history])[0]


def load_forecaster(model: str | Path) -> LoadedForecaster:
    """Load from a local folder or a registry spec (``finpulse-forecaster@champion``, ``name/3``, ``models:/...``)."""
    from finpulse import tracking

    folder, ref = tracking.download_model(str(model))
    meta = json.loads((Path(folder) / META_FILE).read_text())
    config = ForecastConfig(**meta["config"])
    scaler = Scaler.from_dict(meta["scaler"])
    tickers = {str(k): int(v) for k, v in meta["tickers"].items()}
    net = LSTMForecaster(len(scaler.columns), len(tickers), config.hidden_size, config.num_layers, config.dropout,
                         config.embedding_dim, tuple(config.quantiles))
    net.load_state_dict(torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=True))
    net.eval()
    version = ref.label if ref.version else meta.get("extra", {}).get("version", "local")
    return LoadedForecaster(net, config, scaler, tickers, version=str(version), meta=meta)
