"""``geoseg train``: train a generator from a YAML config (progress bar, final metrics table)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from geoseg.cli.app import app

if TYPE_CHECKING:
    from rich.console import Console


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="Training config (YAML).")],
    out: Annotated[Path | None, typer.Option("--out", help="Checkpoint path (overrides 'out').")] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Training steps (overrides).", min=1)] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    time_limit: Annotated[
        float | None,
        typer.Option(
            "--time-limit", help="Stop, validate and save after this many seconds (overrides).", min=1
        ),
    ] = None,
) -> None:
    """Train a segmentation generator (optionally adversarially) and save a checkpoint."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.table import Table

    from geoseg.atomic import remove_dead_temporaries
    from geoseg.safepaths import refuse_overwriting_inputs
    from geoseg.training.config import load_config
    from geoseg.training.trainer import TrainEvent
    from geoseg.training.trainer import train as run_training

    settings = load_config(config, steps=steps, time_limit_s=time_limit)
    if out is not None:
        settings = settings.model_copy(update={"out": str(out)})
    refuse_overwriting_inputs([settings.out], [config])  # the config is an input too
    remove_dead_temporaries(Path(settings.out).parent)  # what a killed train left
    console = Console(stderr=True)
    columns = (
        TextColumn("[bold]train"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    plain_lines = PlainProgress(settings.training.steps) if not console.is_terminal else None
    with Progress(*columns, console=console, disable=plain_lines is not None) as progress:
        task = progress.add_task("train", total=settings.training.steps, status="")

        def report(event: TrainEvent) -> None:
            status = f"loss {event.losses.supervised:.3f}"
            if settings.adversarial:
                status += f" adv {event.losses.adversarial_g:.3f} D {event.losses.discriminator:.3f}"
            if event.metrics is not None:
                m = event.metrics
                progress.console.print(
                    f"step {event.step}: IoU {m.iou:.3f} F1 {m.f1:.3f} boundary-F1 {m.boundary_f1:.3f}"
                )
            progress.update(task, completed=event.step, status=status)
            if plain_lines is not None:
                plain_lines.report(event.step, status, console)

        result = run_training(settings, device=device, callback=report)
    kept = "" if result.kept_step == result.steps else f", generator of step {result.kept_step} kept"
    table = Table(title=f"validation after {result.steps} steps ({result.seconds:.0f} s{kept})")
    for name in ("IoU", "F1", "precision", "recall", "boundary F1"):
        table.add_column(name, justify="right")
    m = result.metrics
    table.add_row(*(f"{v:.3f}" for v in (m.iou, m.f1, m.precision, m.recall, m.boundary_f1)))
    Console().print(table)
    typer.echo(str(result.checkpoint))


class PlainProgress:
    """Progress as plain lines where stderr is no terminal (a log file, a batch job): the first
    step, then one line every ``every_s`` seconds, each with the time since the start."""

    def __init__(self, steps: int, every_s: float = 60.0) -> None:
        self.steps, self.every_s = steps, every_s
        self.started = time.perf_counter()
        self.last: float | None = None

    def report(self, step: int, status: str, console: Console) -> None:
        now = time.perf_counter()
        if self.last is None or now - self.last >= self.every_s:
            self.last = now
            console.print(f"step {step}/{self.steps}: {status} ({now - self.started:.0f} s)", highlight=False)
