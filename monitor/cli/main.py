"""The `monitor` command: infrastructure, worker, reference, producers, alerts, state, demo."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click
import orjson
from rich.console import Console

from monitor.errors import MonitorError
from monitor.settings import Settings, get_settings

# Piped output (CI logs, `| less`) gets a wide table rather than rich's 80-column default.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 180)


def _user_file(path: Path, settings: Settings) -> Path:
    """A file named on the command line (relative to the current directory), inside MONITOR_DATA_DIR."""
    from monitor.paths import confine

    try:
        return confine(settings.data_dir, Path(path).resolve())
    except MonitorError as exc:
        raise click.ClickException(str(exc)) from None


def _run(coro):
    """Run a command's coroutine; a MonitorError, or Redis unreachable or refusing the credentials, is one
    line of error (the URL redacted, never a secret), not a traceback."""
    import redis.exceptions

    from monitor.connect import redis_error_message

    try:
        return asyncio.run(coro)
    except MonitorError as exc:
        raise click.ClickException(str(exc)) from None
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
            redis.exceptions.NoPermissionError) as exc:
        raise click.ClickException(redis_error_message(get_settings(), exc)) from None
    except redis.exceptions.RedisClusterException as exc:
        from monitor.retry import is_transient

        if not is_transient(exc):  # a cluster none of whose nodes answers: one line, as for one Redis
            raise
        raise click.ClickException(redis_error_message(get_settings(), exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Streaming monitor for credit scoring models (Kafka + faust + Redis).

    Settings come from MONITOR_* environment variables (see README).
    """


# ---- infra ----------------------------------------------------------------------------------
@main.group()
def infra() -> None:
    """Local broker (Tansu) and redis-server on loopback, without Docker."""


@infra.command("up")
def infra_up() -> None:
    """Start the broker and Redis (if not running) and create the topics."""
    from monitor.ops import infra as infra_mod

    try:
        for line in infra_mod.up(get_settings()):
            console.print(line)
    except MonitorError as exc:
        raise click.ClickException(str(exc)) from None


@infra.command("down")
def infra_down() -> None:
    """Stop what `infra up` started (the broker's topics are in memory and go with it)."""
    from monitor.ops import infra as infra_mod

    for line in infra_mod.down(get_settings()):
        console.print(line)


@infra.command("status")
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
def infra_status(as_json: bool) -> None:
    """Show each service, its address, PID and whether it listens."""
    from monitor.ops import infra as infra_mod

    rows = infra_mod.status(get_settings())
    if as_json:
        click.echo(orjson.dumps(rows).decode())
        return
    for row in rows:
        state = "[green]up[/]" if row["listening"] and row["running"] else (
            "[yellow]listening (not started by us)[/]" if row["listening"] else "[red]down[/]")
        console.print(f"{row['service']:7} {row['address']:22} pid={row['pid'] or '-':<8} {state}  log {row['log']}")


# ---- worker ---------------------------------------------------------------------------------
@main.command()
@click.option("--loglevel", default="info", show_default=True)
def worker(loglevel: str) -> None:
    """Run the faust worker: fold records into Redis, compute metrics, emit alerts."""
    import faust

    from monitor.worker.app import create_app

    try:
        app = create_app(get_settings())
    except MonitorError as exc:  # e.g. Redis refused the credentials: one line, not a traceback
        raise click.ClickException(str(exc)) from None
    faust.Worker(app, loglevel=loglevel).execute_from_commandline()


# ---- reference ------------------------------------------------------------------------------
@main.group()
def reference() -> None:
    """The model's reference (test-set) scores."""


@reference.command("load")
@click.option("--model")
@click.option("--version", "version", default="1", show_default=True)
@click.option("--file", "path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--score-column", default="score", show_default=True)
@click.option("--mlflow", "model_uri", help="Instead of --model/--file: a version registered in MLflow, "
              "models:/NAME@ALIAS or models:/NAME/VERSION (its reference and feature profile; models/mlflow_registry.py).")
def reference_load(model: str | None, version: str, path: Path | None, score_column: str, model_uri: str | None) -> None:
    """Store the reference score histogram of a CSV, CSV.gz or JSON file (or of an MLflow model version) in Redis."""
    from monitor.ops.reference import load_reference_file

    settings = get_settings()
    if model_uri:
        from models.cli import load_mlflow_reference

        return load_mlflow_reference(model_uri)
    if not (model and path):
        raise click.UsageError("give --model and --file, or --mlflow models:/NAME@ALIAS")
    path = _user_file(path, settings)
    card = _run(load_reference_file(settings, model, version, path, score_column))
    console.print(f"reference of {model}:{version}: {card['n']} scores from {path}"
                  + (f", AUC {float(card['auc']):.4f}" if card.get("auc") else ""))


# ---- produce --------------------------------------------------------------------------------
@main.command()
@click.option("--file", "path", type=click.Path(dir_okay=False, path_type=Path), help="CSV, CSV.gz or JSON list.")
@click.option("--synthetic", type=str, help="A synthetic scenario name (producers.synthetic.SCENARIOS).")
@click.option("--dataset", type=str, help="A bundled dataset (datasets.DATASETS), scored by the registered --model.")
@click.option("--model", help="Model name (required with --file and --dataset; a registered model scores a file without score).")
@click.option("--version", "version", default=None, help="Published version [default: 1; the latest registered one when a model scores].")
@click.option("--score-column", default="score", show_default=True)
@click.option("--labels", type=click.Choice(["inline", "none", "separate"]), default="inline", show_default=True,
              help="separate: records without target, then the outcomes on the outcomes topic.")
@click.option("--rate", type=float, help="Records per second (default: as fast as possible).")
@click.option("--batch", "per_message", default=1, show_default=True, help="Records per Kafka message.")
def produce(path, synthetic, dataset, model, version, score_column, labels, rate, per_message) -> None:
    """Publish records to the records topic."""
    from producers import sources
    from producers.publish import publish

    if path is not None:
        path = _user_file(path, get_settings())
    if sum(map(bool, (path, synthetic, dataset))) != 1:
        raise click.UsageError("give exactly one of --file, --synthetic or --dataset")
    try:
        records, total = sources.open_source(path=path, synthetic=synthetic, dataset=dataset, model=model,
                                             version=version, score_column=score_column, labels=labels)
    except MonitorError as exc:
        raise click.ClickException(str(exc)) from None
    settings = get_settings()
    from rich.progress import Progress

    with Progress(console=console, transient=False) as progress:
        task = progress.add_task(f"publishing to {settings.records_topic}", total=total)
        sent = _run(publish(records, settings, per_message=per_message, rate=rate,
                            on_progress=lambda n: progress.advance(task, n)))
    console.print(f"published {sent} records")
    if getattr(records, "report", None) is not None:
        console.print(f"scored with {records.model}:{records.version}: {records.report.summary()}")
    if labels == "separate":
        outcomes = records.outcome_records()
        sent = _run(publish(outcomes, settings, topic=settings.outcomes_topic, per_message=per_message, rate=rate))
        console.print(f"published {sent} outcomes to {settings.outcomes_topic}")


@main.command("publish")
@click.option("--topic", help="Topic to write to [default: MONITOR_RECORDS_TOPIC; MONITOR_OUTCOMES_TOPIC's name for outcomes].")
def publish_cmd(topic: str | None) -> None:
    """Publish stdin, one message per line (a JSON record or array, as is), like `kcat -P`.

    Any Kafka client can publish; this one speaks to every broker `monitor` does (the embedded Tansu
    included, which Debian 12's kcat cannot), with the MONITOR_KAFKA_* settings.
    """
    from producers.publish import publish_lines

    settings = get_settings()
    sent = _run(publish_lines(sys.stdin.buffer, settings, topic=topic))
    click.echo(f"published {sent} messages to {topic or settings.records_topic}", err=True)


# ---- alerts ---------------------------------------------------------------------------------
@main.command()
@click.option("--follow", is_flag=True, help="Subscribe to the alerts topic and print events as they come.")
@click.option("--from-beginning", is_flag=True, help="With --follow: start at the topic's first event.")
@click.option("--history", "history", is_flag=True, help="Print the alert history kept in Redis.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--limit", default=50, show_default=True, help="With --history: how many, newest first.")
def alerts(follow: bool, from_beginning: bool, history: bool, as_json: bool, limit: int) -> None:
    """Alert events: firing alerts now (default), the history, or a live subscription."""
    settings = get_settings()

    def show(event: dict) -> None:
        if as_json:
            click.echo(orjson.dumps(event).decode())
        else:
            from monitor.cli.views import alert_line

            console.print(alert_line(event))

    if follow:
        # Ctrl-C ends a subscription quietly, also while the modules still load (scipy: seconds on a busy
        # machine)
        from monitor.cli import load_noting_interrupts

        follow_mod, interrupted = load_noting_interrupts("monitor.alerts.follow")
        if interrupted:
            return
        try:
            _run(follow_mod.follow_alerts(settings, show, from_beginning=from_beginning))
        except KeyboardInterrupt:
            pass
        return
    from monitor.alerts import follow as follow_mod

    events = _run(follow_mod.alert_history(settings, limit)) if history else _run(follow_mod.firing_now(settings))
    for event in events:
        show(event)
    if not events and not as_json:
        console.print("no alerts" if history else "no firing alerts")


# ---- rules ----------------------------------------------------------------------------------
@main.group()
def rules() -> None:
    """The alert rules in force (environment + MONITOR_ALERT_RULES_FILE)."""


@rules.command("export")
@click.option("--prometheus", "as_prometheus", is_flag=True, required=True,
              help="Prometheus alerting rules over the gauges of `monitor api` /metrics.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="File to write (default: stdout).")
def rules_export(as_prometheus: bool, output: Path | None) -> None:
    """Export the rules for another system: `--prometheus` writes a rules YAML (check: promtool check rules FILE)."""
    from monitor.alerts.prometheus import prometheus_rules_yaml
    from monitor.alerts.rules import load_alert_config

    settings = get_settings()
    try:
        text = prometheus_rules_yaml(load_alert_config(settings), settings.dashboard_url)
    except MonitorError as exc:
        raise click.ClickException(str(exc)) from None
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text)
        console.print(f"wrote {output}")


# ---- notify ---------------------------------------------------------------------------------
@main.command()
@click.option("--loglevel", default="info", show_default=True)
def notify(loglevel: str) -> None:
    """Deliver alert events to Alertmanager (MONITOR_ALERTMANAGER_URL) and/or a webhook (MONITOR_WEBHOOK_URL).

    Its own consumer group (MONITOR_NOTIFY_GROUP) on the alerts topic; an event's offset is committed
    once delivered or dead-lettered (MONITOR_NOTIFY_DEAD_LETTER_TOPIC). See monitor/alerts/notify.py.
    """
    import logging

    from monitor.alerts.notify import run_notify

    logging.basicConfig(level=loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        _run(run_notify(get_settings()))
    except KeyboardInterrupt:
        pass


# ---- state ----------------------------------------------------------------------------------
@main.command()
@click.option("--model", help="Only this model.")
@click.option("--window", type=click.Choice(["month", "rolling", "cumulative"]), default="month", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="JSON for machines (every window).")
def state(model: str | None, window: str, as_json: bool) -> None:
    """Per model/version/month: counts, AUC, Gini, KS, KS adherence, PSI and firing alerts."""
    from monitor.cli.views import print_state
    from monitor.state import Store
    from monitor.state.reads import collect_state

    async def go():
        store = Store.connect(get_settings())
        try:
            return await collect_state(store, model)
        finally:
            await store.close()

    rows = _run(go())
    if as_json:
        click.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
    else:
        print_state(rows, console, window)


# ---- api ----------------------------------------------------------------------------------
@main.group(invoke_without_command=True)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on; another than loopback needs API tokens (MONITOR_API_TOKENS).")
@click.option("--port", default=8000, show_default=True, type=int, help="TCP port.")
@click.pass_context
def api(ctx: click.Context, host: str, port: int) -> None:
    """Serve the HTTP API, Prometheus /metrics and the web dashboard at / (uvicorn).

    Every endpoint but /health and /docs needs a bearer token: `monitor api token` creates one.
    """
    if ctx.invoked_subcommand is not None:
        return
    from monitor.api.app import check_exposure, serve

    settings = get_settings()
    try:
        check_exposure(settings, host)
    except MonitorError as exc:
        raise click.ClickException(str(exc)) from None
    serve(settings, host=host, port=port)


@api.command("token")
@click.option("--scope", type=click.Choice(["read", "write"]), required=True,
              help="read: state, alerts, metrics, dashboard; write: also the classic POST endpoints.")
@click.option("--name", default=None, help="A name for logs and the rate limit (default: from the hash).")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the token to this file (mode 600), e.g. Prometheus' credentials_file.")
@click.option("--entries-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also append the entry to this file (MONITOR_API_TOKENS_FILE).")
def api_token(scope: str, name: str | None, token_file: Path | None, entries_file: Path | None) -> None:
    """Print a new random API token and the settings entry that holds only its SHA-256."""
    from monitor.api.auth import hash_token, new_token

    token = new_token()
    entry = f"{name + ':' if name else ''}{scope}:{hash_token(token)}"
    if name is not None and any(c in name for c in ":,# \t\n"):
        raise click.BadParameter("a name without ':', ',', '#' or spaces", param_hint="--name")
    click.echo(f"token: {token}")
    click.echo("(shown once: give it to the client; the server keeps only the entry below)")
    click.echo(f"entry: {entry}")
    click.echo(f"e.g.   MONITOR_API_TOKENS={entry}   (several entries: comma-separated, or one per line "
               f"in MONITOR_API_TOKENS_FILE)")
    if token_file is not None:
        _write_private(token_file, token + "\n", append=False)
        click.echo(f"token written to {token_file}")
    if entries_file is not None:
        _write_private(entries_file, entry + "\n", append=True)
        click.echo(f"entry appended to {entries_file}")


def _write_private(path: Path, text: str, append: bool) -> None:
    """Write (or append) ``text`` to a file only its owner may read."""
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC), 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


# ---- faults ---------------------------------------------------------------------------------
@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def faults(args) -> None:
    """Fault runs on a throwaway broker + Redis: kill -9, takeover, Redis restart/flush, broker restart.

    Options: --scenario kills|takeover|redis-restart|redis-flush|broker-restart|failover|...|all, --records N
    (default 200000), --kills K (5), --malformed M (10000), --redis-cluster (on a local Redis Cluster;
    failover always is). Prints input, final, lost and double-counted (--scenario -h lists them all).
    """
    from monitor.ops.faults import main as faults_main

    sys.exit(faults_main(list(args)))


# ---- bench ----------------------------------------------------------------------------------
@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench(args) -> None:
    """Benchmark on a throwaway broker + Redis: the worker against raw aiokafka, no-op faust and naive faust + Redis.

    Options: --records N (200000), --batch-size B (100), --repeat K (1), --latency-seconds S (20),
    --latency-rate R (5000), --skip-latency, --skip-memory, --quick, --json PATH (artifacts/bench.json).
    Prints a table (records/s, ratios, latency p50/p99, Redis bytes per model and month, RSS) and writes JSON.

    `monitor bench --alerts`: the alert-quality benchmark instead (monitor/bench/alerts.py: --scale small|full,
    --volume N, --models N, --scenario NAME, --list, --markdown, --check-targets; all of them:
    `python -m monitor.bench.alerts --help`).
    `monitor bench --scale`: many models with months of history under live traffic (monitor/bench/scale.py:
    --models N (1000), --months N (24), --rate R (5000), --workers N, --redis URL; `python -m monitor.bench.scale
    --help`).
    """
    from monitor.bench import main as bench_main

    sys.exit(bench_main(list(args)))


# ---- demo -----------------------------------------------------------------------------------
@main.command()
@click.option("--keep", is_flag=True, help="Leave the broker, Redis and the worker running.")
@click.option("--scenario", default="demo", show_default=True)
def demo(keep: bool, scenario: str) -> None:
    """Live demo: infra up, reference, worker, replay a drifting stream, alerts live, state table."""
    from monitor.ops.demo import run_demo

    try:
        ok = run_demo(get_settings(), console, scenario=scenario, keep=keep)
    except MonitorError as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(0 if ok else 1)


from models.cli import models_group  # noqa: E402

main.add_command(models_group)


if __name__ == "__main__":  # pragma: no cover
    main()
