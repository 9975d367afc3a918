"""`finpulse tune`: a Ray Tune sweep from a sweep file (either model: the file says which), and
`finpulse tune-report`: its leaderboard, read from the Ray storage path."""

from __future__ import annotations

from typing import Annotated

import typer

from finpulse.cli._app import app, print_json

INTERRUPTED_EXIT_CODE = 130  # as a shell reports a process stopped by Ctrl-C


@app.command("tune")
def tune_cmd(
    space: Annotated[str, typer.Option(help="Sweep file (YAML), or a shipped example by name: forecaster, "
                                            "sentiment (finpulse/sweeps/examples/).")] = "forecaster",
    name: Annotated[str | None, typer.Option(help="Sweep name: the Ray experiment under FINPULSE_RAY_STORAGE_PATH "
                                                  "and the MLflow parent run (default: the file's, else "
                                                  "<model>-<time>).")] = None,
    resume: Annotated[str | None, typer.Option(help="Continue the sweep of this name (its saved file; --space "
                                                    "and --set are ignored): finished trials are not rerun.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a field of the file, e.g. "
                                                                 "--set budget.samples=16 (repeatable; value "
                                                                 "read as YAML).")] = None,
    register: Annotated[bool, typer.Option(help="Retrain the best with Ray Train and register it as "
                                                "challenger (the gate promotes).")] = True,
) -> None:
    """Ray Tune sweep: each trial an MLflow child run of the sweep's run; the best retrained as challenger."""
    from finpulse.runtime import GpuUnavailable
    from finpulse.sweeps import SweepInterrupted, SweepSpecError, load_spec, run_sweep
    from finpulse.sweeps.report import printable

    try:  # a bad file is refused here, before Ray starts
        spec = load_spec(space, set_ or [])
    except SweepSpecError as e:
        raise typer.BadParameter(str(e), param_hint="--space/--set") from None
    try:
        out = run_sweep(spec, name=resume or name, resume=resume is not None, register=register)
    except SweepSpecError as e:
        raise typer.BadParameter(str(e), param_hint="--name/--resume") from None
    except GpuUnavailable as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    except SweepInterrupted as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(INTERRUPTED_EXIT_CODE) from None
    typer.echo(printable(out.leaderboard))
    print_json({"sweep": out.name, "path": out.path, f"best_{out.metric}": out.best_metric, "best": out.best_params,
                "parent_run_id": out.parent_run_id, "wall_s": round(out.wall_s, 1), "registered": out.registered})


@app.command("tune-report")
def tune_report_cmd(
    name: Annotated[str, typer.Argument(help="Sweep name (as given to `finpulse tune --name`).")],
) -> None:
    """The leaderboard of a sweep (rank, trial, parameters, best metric, epochs, status), running or done."""
    from finpulse.sweeps import SweepSpecError
    from finpulse.sweeps.report import printable, report

    try:
        spec, board = report(name)
    except SweepSpecError as e:
        raise typer.BadParameter(str(e), param_hint="NAME") from None
    typer.echo(f"sweep {name}: {spec.model}, {spec.search.kind} search, {spec.scheduler.kind} scheduler, "
               f"{len(board)} of {spec.budget.samples} trials, {spec.mode} {spec.metric}")
    typer.echo(printable(board))
