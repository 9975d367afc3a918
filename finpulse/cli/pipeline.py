"""Pipeline commands: the first chain on embedded data (bootstrap) and the retraining loop (run)."""

from __future__ import annotations

import json
import threading
from typing import Annotated

import typer

from finpulse.cli._app import app, print_json

pipeline_app = typer.Typer(help="The main job's chain and the retraining loop.", no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")


@pipeline_app.command("bootstrap")
def pipeline_bootstrap(
    quick: Annotated[bool, typer.Option(help="The same stages on less: fewer posts, examples, epochs.")] = False,
    options: Annotated[str, typer.Option(help="PipelineOptions fields as JSON (posts_per_day, signal_strength, "
                                              "sentiment_examples, ...).")] = "{}",
    quiet: Annotated[bool, typer.Option(help="Print only the JSON summary (no banners, bars, tables).")] = False,
) -> None:
    """What `make demo` runs before serving: embedded data, ETL, sentiment fine-tune (gated) and scoring, ETL
    with model scores, forecaster training, walk-forward evaluation, promotion. Ends with a JSON summary."""
    from finpulse import pipeline
    from finpulse.demo import ConsolePresenter
    from finpulse.paths import data_paths
    from finpulse.runtime import connect

    opts = pipeline.PipelineOptions(**json.loads(options))
    opts = opts.quick() if quick else opts
    connect()
    print_json(pipeline.run_pipeline(data_paths(), opts, None if quiet else ConsolePresenter(opts)).summary())


@pipeline_app.command("run")
def pipeline_run(
    every: Annotated[str | None, typer.Option(help="Run a turn on this schedule until Ctrl-C: 30m, 6h, 1d, "
                                                   "1d12h. Default: one turn and exit.")] = None,
    on_drift: Annotated[bool, typer.Option(help="Run the drift job first and start a turn only on its alarm "
                                                "(with --every: also between scheduled turns).")] = False,
    drift_window_days: Annotated[int, typer.Option(help="Trading days the drift job compares.")] = 10,
    serving: Annotated[str | None, typer.Option(help="Ray dashboard of the app to canary on; default: the "
                                                     "`finpulse serve` of this home, if it runs.")] = None,
    quick: Annotated[bool, typer.Option(help="Fewer examples, epochs and refits, a 30 s soak.")] = False,
    options: Annotated[str, typer.Option(help="LoopOptions fields as JSON (canary_weight, soak_s, margin, "
                                              "forecast_epochs, ...).")] = "{}",
    quiet: Annotated[bool, typer.Option(help="Print only each turn's JSON summary (no step lines).")] = False,
) -> None:
    """The retraining loop: sentiment (when its labelled data changed) -> ETL -> score -> train the
    forecaster challenger -> evaluate with the champion -> gate -> canary -> soak -> promote or roll back.
    Steps are keyed by their inputs: a rerun after a crash finishes the turn without redoing done steps.
    One turn at a time (a lock); every turn is an MLflow run in `finpulse-pipeline` with a child per step."""
    from finpulse.config import get_settings
    from finpulse.loop import schedule
    from finpulse.loop.lock import LoopBusy
    from finpulse.loop.run import Triggers, run_loop
    from finpulse.loop.turn import LoopOptions
    from finpulse.paths import data_paths
    from finpulse.pipeline import PipelineOptions
    from finpulse.runtime import connect

    extra = json.loads(options)
    loop_options = (LoopOptions.from_pipeline(PipelineOptions().quick(), soak_s=30.0, **extra) if quick
                    else LoopOptions(**extra))
    triggers = Triggers(every_s=schedule.parse_every(every) if every else None, on_drift=on_drift,
                        drift_window_days=drift_window_days, serving=serving)
    connect()
    stop = threading.Event()
    restore = schedule.install_stop_signals(stop)
    try:
        outcomes = run_loop(data_paths(), loop_options, triggers, home=get_settings().home, stop=stop,
                            on_step=None if quiet else _print_step)
    except LoopBusy as exc:
        typer.echo(f"finpulse pipeline run: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        restore()
    if not outcomes:
        typer.echo("no turn ran (no drift alarm)" if on_drift else "no turn ran")
    for out in outcomes:
        print_json({"turn": out.turn_id, "outcome": out.outcome, "reasons": out.reasons, "summary": out.summary})


def _print_step(result: object) -> None:
    from finpulse.loop.turn import describe_step

    for line in describe_step(result):
        typer.echo(line)
