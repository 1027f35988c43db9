"""``spamsift bench``: run a benchmark; it rewrites its own section of BENCHMARKS.md."""

from __future__ import annotations

import subprocess
import sys

import click

BENCHES = {
    "import": "bench.import_bench",
    "lm": "bench.lm_bench",
    "classifiers": "bench.classifier_bench",
    "pipeline": "bench.pipeline_bench",
    "webhooks": "bench.webhook_bench",
    "search": "bench.search_bench",
}


@click.command("bench", context_settings={"ignore_unknown_options": True})
@click.argument("name", type=click.Choice(sorted(BENCHES)))
@click.argument("options", nargs=-1, type=click.UNPROCESSED)
def bench_command(name: str, options: tuple[str, ...]) -> None:
    """Run benchmark NAME; options after NAME go to it (e.g. `import --repeats 3`; each
    benchmark's options: python -m bench.<module> --help)."""
    result = subprocess.run([sys.executable, "-m", BENCHES[name], *options])
    if result.returncode:
        raise click.ClickException(f"benchmark {name} failed (exit {result.returncode})")
