"""Tune sweeps at the same budget: ASHA and TPE+ASHA against random search with FIFO.

Every arm runs the same sweep file but its scheduler and search: the same space, the same number of
trials, the same maximum epochs, the same concurrency, and the SAME early stopping inside every trial
(the forecaster's ``patience``), so FIFO is the honest baseline a researcher would otherwise run. The arms
run side by side for each seed (interleaved, so machine noise hits all three), on the real daily
features of the shipped Yahoo prices, with no retraining or registration (``register=False``).

Figures (``benchmarks/results/tune.json``), each the median over seeds with its range:

- ``asha_time_ratio``: wall time of random+ASHA over random+FIFO.
- ``asha_best_loss_gap``: (best validation loss of random+ASHA - random+FIFO's) / random+FIFO's.
- ``tpe_time_ratio`` and ``tpe_best_loss_gap``: the same for TPE+ASHA.

Goal (issue 16): TPE+ASHA within 2% of random FIFO's best loss in at most half its time.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import os
import statistics
import uuid
from typing import Any

from _common import print_table, write_result

ARMS = {"fifo": ("fifo", "random"), "asha": ("asha", "random"), "tpe": ("asha", "tpe")}

SPACE: dict[str, Any] = {
    "lr": {"loguniform": [3e-4, 1e-2]},
    "hidden_size": {"choice": [16, 32, 64]},
    "lookback": {"choice": [10, 20, 30]},
    "num_layers": {"choice": [1, 2]},
    "dropout": {"uniform": [0.0, 0.3]},
    "batch_size": {"choice": [64, 128]},
}


def sweep_spec(arm: str, seed: int, samples: int, max_epochs: int) -> dict[str, Any]:
    """The one sweep every arm shares; only ``scheduler.kind`` and ``search.kind`` differ."""
    scheduler, search = ARMS[arm]
    return {
        "model": "forecaster", "metric": "val_loss", "mode": "min", "params": copy.deepcopy(SPACE),
        # patience: the forecaster's default early stopping, the same in every arm (FIFO included)
        "base": {"feature_set": "price", "val_end": "2020-01-01", "seed": seed},
        "budget": {"samples": samples, "max_concurrent": os.cpu_count() or 1, "cpus_per_trial": 1,
                   "max_epochs": max_epochs},
        "scheduler": {"kind": scheduler, "grace_period": 2, "reduction_factor": 3},
        "search": {"kind": search, "seed": seed},
    }


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=3, help="repeats (each runs the three arms side by side)")
    p.add_argument("--samples", type=int, default=16, help="trials per sweep (the budget)")
    p.add_argument("--max-epochs", type=int, default=27)
    p.add_argument("--quick", action="store_true", help="two tickers, 8 trials, 8 epochs, one seed")
    args = p.parse_args()
    if args.quick:
        args.seeds, args.samples, args.max_epochs = 1, 8, 8

    from finpulse.forecast.inputs import daily_features
    from finpulse.resources import load_prices
    from finpulse.runtime import connect
    from finpulse.sweeps import parse_spec, run_sweep

    connect()
    features = daily_features(load_prices(["AAPL", "MSFT"] if args.quick else None))
    runs: list[dict[str, Any]] = []
    for seed in range(args.seeds):
        row: dict[str, Any] = {"seed": seed}
        for arm in ARMS:
            spec = parse_spec(sweep_spec(arm, seed, args.samples, args.max_epochs), source=f"bench-{arm}")
            out = run_sweep(spec, name=f"bench-tune-{arm}-{seed}-{uuid.uuid4().hex[:6]}", register=False,
                            data=features)
            row[arm] = {"wall_s": out.wall_s, "best_val_loss": out.best_metric,
                        "epochs_total": int(out.leaderboard["epochs"].sum()), "best_params": out.best_params}
            print(f"seed {seed} {arm}: {row[arm]['wall_s']:.1f} s, best val_loss {out.best_metric:.5f}, "
                  f"{row[arm]['epochs_total']} epochs", flush=True)
        runs.append(row)

    def ratio(arm: str) -> list[float]:
        return [r[arm]["wall_s"] / r["fifo"]["wall_s"] for r in runs]

    def gap(arm: str) -> list[float]:
        return [(r[arm]["best_val_loss"] - r["fifo"]["best_val_loss"]) / r["fifo"]["best_val_loss"] for r in runs]

    figures = {"asha_time_ratio": ratio("asha"), "asha_best_loss_gap": gap("asha"),
               "tpe_time_ratio": ratio("tpe"), "tpe_best_loss_gap": gap("tpe")}
    result = {
        "date": dt.date.today().isoformat(), "machine_cpus": os.cpu_count(), "quick": args.quick,
        "setup": {"samples": args.samples, "max_epochs": args.max_epochs, "seeds": args.seeds,
                  "space": SPACE, "early_stopping": "the forecaster's default patience in every arm",
                  "baseline": "random search + FIFO", "data": "daily features of the shipped Yahoo prices"},
        **{k: statistics.median(v) for k, v in figures.items()},
        "spread": {k: spread(v) for k, v in figures.items()},
        "runs": runs,
    }
    tpe_ok = result["tpe_best_loss_gap"] <= 0.02 and result["tpe_time_ratio"] <= 0.5
    result["goals"] = {"tpe_best_loss_gap <= 0.02 and tpe_time_ratio <= 0.5": tpe_ok}
    path = write_result("tune", result)
    print_table([(k, f"{result[k]:.3f} ({result['spread'][k]['min']:.3f}..{result['spread'][k]['max']:.3f})")
                 for k in figures] + [("goal met", tpe_ok)], f"Tune at the same budget ({path})")


if __name__ == "__main__":
    main()
