"""`monitor models`: train, list, show, migrate registered models and load their reference into Redis.

Registered in monitor/cli/main.py with ``main.add_command(models_group)``.
"""

from __future__ import annotations

import asyncio
import sys

import click
import orjson
from rich.console import Console
from rich.table import Table

from monitor.errors import MonitorError

console = Console(highlight=False, width=None if sys.stdout.isatty() else 180)


def _settings():
    from monitor.settings import get_settings

    return get_settings()


def _registry(mlflow: bool = False):
    """The on-disk registry, or MLflow's with ``--mlflow`` or MONITOR_MLFLOW_TRACKING_URI (models/mlflow_registry.py)."""
    from models.mlflow_registry import registry_for

    return registry_for(_settings(), mlflow)


def _is_mlflow(registry) -> bool:
    return type(registry).__name__ == "MlflowRegistry"  # without importing mlflow for the on-disk registry


MLFLOW_HELP = ("Use the MLflow registry (MONITOR_MLFLOW_TRACKING_URI, else the embedded store "
               "sqlite:///<run_dir>/mlflow.db); implied when MONITOR_MLFLOW_TRACKING_URI is set.")


def _fmt(value, digits: int = 4) -> str:
    return "-" if value is None else f"{float(value):.{digits}f}"


def _metrics_line(label: str, m: dict | None, months: list[str] | None = None) -> str:
    if not m:
        return f"  {label:5} -"
    where = f"{', '.join(months)}, " if months else ""
    return (f"  {label:5} ({where}n={m['n']}, bads={m['bads']}): AUC {_fmt(m.get('auc'))}  "
            f"Gini {_fmt(m.get('gini'))}  KS {_fmt(m.get('ks'))}")


def _load_reference_hint(card) -> str:
    return f"monitor models load-reference {card.name} --version {card.version}"


def _load_reference(card) -> dict:
    from models.registry import load_reference

    return asyncio.run(load_reference(_settings(), card))


@click.group("models")
def models_group() -> None:
    """Registered scoring models: train on a bundled dataset, list, show, load the reference."""


@models_group.command("train")
@click.option("--dataset", required=True, help="A bundled dataset (datasets.DATASETS): lendingclub, lending_club, credit_data.")
@click.option("--kind", type=click.Choice(["default", "enhanced"]), default="default", show_default=True,
              help="default: logistic regression; enhanced: gradient boosting.")
@click.option("--name", help="Model name (default <dataset>_<kind>); the version is the next integer.")
@click.option("--no-redis", is_flag=True, help="Do not load the reference histogram into Redis (the artifact's "
              "sha256 still goes to the model ledger, MONITOR_MODELS_LEDGER: Redis unless a file is named).")
@click.option("--json", "as_json", is_flag=True, help="Print the card as JSON.")
@click.option("--mlflow", is_flag=True, help=MLFLOW_HELP)
@click.option("--alias", help="MLflow: point models:/NAME@ALIAS (e.g. champion, challenger) at the new version.")
def train_cmd(dataset: str, kind: str, name: str | None, no_redis: bool, as_json: bool, mlflow: bool,
              alias: str | None) -> None:
    """Train a model, record its test metrics and register it (its reference goes to Redis)."""
    from datasets import DATASETS, MISSING_DATASETS
    from models.train import train

    if dataset not in DATASETS:
        why = MISSING_DATASETS.get(dataset, f"choose one of {', '.join(sorted(DATASETS))}")
        raise click.BadParameter(f"no dataset {dataset!r}: {why}", param_hint="--dataset")
    from models.mlflow_registry import ALIAS_RE

    if alias is not None and not ALIAS_RE.match(alias):  # refused before training, not after registering
        raise click.BadParameter(f"{alias!r}: use 1-64 of A-Z a-z 0-9 _ -", param_hint="--alias")
    registry = _registry(mlflow or alias is not None)
    try:
        card = train(dataset, kind, name, registry=registry)
        if alias is not None:
            registry.set_alias(card.name, alias, card.version)
    except MonitorError as exc:
        raise click.ClickException(str(exc)) from None
    loaded, reason = None, "--no-redis"
    if not no_redis:
        try:
            loaded = _load_reference(card)
        except MonitorError as exc:
            reason = str(exc)
    if as_json:
        click.echo(orjson.dumps({"card": card.model_dump(), "reference_loaded": loaded is not None},
                                option=orjson.OPT_INDENT_2).decode())
        return
    split, metrics = card.get("split"), card.get("metrics")
    console.print(f"trained [bold]{card.name}[/] version [bold]{card.version}[/] "
                  f"({card.get('estimator')} on {dataset}, {card.get('training_seconds')} s)")
    console.print(_metrics_line("train", metrics.get("train"), split.get("train_months")))
    console.print(_metrics_line("test", metrics.get("test"), split.get("test_months")))
    if metrics.get("oot"):
        console.print(_metrics_line("oot", metrics.get("oot"), split.get("oot_months")))
    if _is_mlflow(registry):
        console.print(f"  registered in MLflow as {registry.path(card.name, card.version)}"
                      + (f" (alias {alias})" if alias else "") + f"  sha256 {card.sha256}  ({registry.uri})")
    else:
        console.print(f"  registered in {registry.path(card.name, card.version)}  sha256 {card.sha256}")
    if loaded is not None:
        console.print(f"  reference: {loaded['n']} test-split scores loaded into Redis for {card.name}:{card.version}")
    else:
        hint = (f"monitor reference load --mlflow {registry.path(card.name, card.version)}" if _is_mlflow(registry)
                else _load_reference_hint(card))
        console.print(f"  reference NOT loaded into Redis ({reason}); load it later with: {hint}")


@models_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.option("--mlflow", is_flag=True, help=MLFLOW_HELP)
def list_cmd(as_json: bool, mlflow: bool) -> None:
    """Every registered model version: name, version, dataset, kind, created, test AUC."""
    registry = _registry(mlflow)
    try:
        cards = registry.cards()
    except MonitorError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(orjson.dumps([{"name": c.name, "version": c.version, "dataset": c.get("dataset"),
                                  "kind": c.get("kind"), "created": c.created,
                                  "test_auc": c.metric("test", "auc")} for c in cards],
                                option=orjson.OPT_INDENT_2).decode())
        return
    if not cards:
        console.print(f"no models in {registry.root} (train one: monitor models train --dataset lendingclub)")
        return
    table = Table(title=f"models in {registry.root}", header_style="bold")
    for col in ("name", "version", "dataset", "kind", "created", "test AUC", "oot AUC"):
        table.add_column(col, justify="right" if "AUC" in col or col == "version" else "left")
    for c in cards:
        table.add_row(c.name, c.version, str(c.get("dataset")), str(c.get("kind")), c.created,
                      _fmt(c.metric("test", "auc")), _fmt(c.metric("oot", "auc")))
    console.print(table)


@models_group.command("show")
@click.argument("name")
@click.option("--version", "version", help="Default: the latest.")
@click.option("--json", "as_json", is_flag=True, help="The whole card (with the reference histogram and raw test scores).")
@click.option("--mlflow", is_flag=True, help=MLFLOW_HELP)
def show_cmd(name: str, version: str | None, as_json: bool, mlflow: bool) -> None:
    """A model's card: dataset, split, test (and out-of-time) AUC, Gini, KS, features, sha256."""
    try:
        card = _registry(mlflow).card(name, version)
    except MonitorError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(orjson.dumps(card.model_dump(), option=orjson.OPT_INDENT_2).decode())
        return
    split, metrics, features = card.get("split") or {}, card.get("metrics") or {}, card.get("features") or {}
    ref = card.get("reference") or {}
    console.print(f"[bold]{card.name}[/] version {card.version}  created {card.created}")
    console.print(f"  dataset    {card.get('dataset')} ({(card.get('dataset_card') or {}).get('source', '')})")
    console.print(f"  estimator  {card.get('estimator')} (kind {card.get('kind')})")
    console.print(f"  target     {card.get('target')}")
    console.print(f"  split      {split.get('method')}: "
                  + ", ".join(f"{k[2:]} {v}" for k, v in split.items() if k.startswith("n_")))
    for part in ("train", "test", "oot"):
        if metrics.get(part):
            console.print(_metrics_line(part, metrics[part], split.get(f"{part}_months")))
    console.print(f"  reference  {ref.get('n')} test scores at resolution {ref.get('resolution')}"
                  + (f", AUC on quantized scores {_fmt(ref.get('auc'))}" if ref.get("auc") is not None else ""))
    console.print(f"  numeric    ({len(features.get('numeric', []))}) {', '.join(features.get('numeric', []))}")
    console.print(f"  categorical ({len(features.get('categorical', []))}) {', '.join(features.get('categorical', []))}")
    console.print(f"  libraries  {', '.join(f'{k} {v}' for k, v in card.libraries.items())}")
    console.print(f"  artifact   {card.artifact.get('file')} {card.artifact.get('bytes')} bytes  sha256 {card.sha256}")


@models_group.command("load-reference")
@click.argument("name")
@click.option("--version", "version", help="Default: the latest (MLflow: a number or an alias).")
@click.option("--mlflow", is_flag=True, help=MLFLOW_HELP)
def load_reference_cmd(name: str, version: str | None, mlflow: bool) -> None:
    """Store a registered model's reference (test-split) histogram in Redis."""
    try:
        card = _registry(mlflow).card(name, version)
        meta = _load_reference(card)
    except MonitorError as exc:
        raise click.ClickException(str(exc)) from None
    console.print(f"reference of {card.name}:{card.version}: {meta['n']} test-split scores loaded into Redis"
                  + (f", AUC {float(meta['auc']):.4f}" if meta.get("auc") is not None else ""))


@models_group.command("migrate")
@click.argument("name", required=False)
@click.option("--version", "version", help="Default: every pickle version of NAME (or of every model).")
def migrate_cmd(name: str | None, version: str | None) -> None:
    """Re-save models registered as pickles (before skops) as skops files, in place, and record their
    sha256 in the ledger. Unpickling runs code: needs MONITOR_ALLOW_PICKLE_ARTIFACTS=true."""
    from models.registry import Registry, models_dir

    registry = Registry(models_dir(_settings()), settings=_settings())  # pickles exist only on disk, never in MLflow
    try:
        todo = [(n, v) for n, v in registry.legacy_versions()
                if (name is None or n == name) and (version is None or v == str(version))]
        if not todo:
            console.print("no pickle artifacts to migrate")
            return
        for n, v in todo:
            card = registry.migrate(n, v)
            console.print(f"migrated {n}:{v} to skops  sha256 {card.sha256}")
    except MonitorError as exc:
        raise click.ClickException(str(exc)) from None


@models_group.command("alias")
@click.argument("name")
@click.argument("alias")
@click.option("--version", "version", help="Default: the latest.")
def alias_cmd(name: str, alias: str, version: str | None) -> None:
    """MLflow: point models:/NAME@ALIAS (champion, challenger...) at a registered version."""
    registry = _registry(True)
    try:
        target = registry.resolve(name, version)
        registry.set_alias(name, alias, target)
    except MonitorError as exc:
        raise click.ClickException(str(exc)) from None
    console.print(f"models:/{name}@{alias} -> version {target}")


@models_group.command("sync-mlflow")
@click.option("--model", help="Default: every monitored model registered in MLflow.")
@click.option("--version", "version", help="Default: every monitored version of it.")
@click.option("--follow", is_flag=True, help="Sync again every --interval seconds until Ctrl-C.")
@click.option("--interval", type=float, default=60.0, show_default=True)
def sync_mlflow_cmd(model: str | None, version: str | None, follow: bool, interval: float) -> None:
    """Log each closed month's monitored metrics (AUC, Gini, KS, KS adherence, PSI, volume) of registered
    versions to MLflow: a monitoring run per version, step = YYYYMM; a month is logged once."""
    import time

    from models.mlflow_sync import sync

    registry = _registry(True)
    try:
        while True:
            try:
                results = sync(_settings(), registry, model, version)
            except MonitorError as exc:
                raise click.ClickException(str(exc)) from None
            except Exception as exc:
                if not follow:
                    raise
                # Redis or the MLflow server away for a while: a follower tries again, it does not die
                console.print(f"sync failed ({type(exc).__name__}: {exc}); again in {interval:g} s")
                time.sleep(interval)
                continue
            if not results:
                console.print("no monitored model" + (f" {model}" if model else "") + " in Redis")
            for name, ver, logged, note in results:
                done = f"logged {', '.join(logged)}" if logged else "nothing new"
                console.print(f"{name}:{ver}: {done}" + (f" ({note})" if note else ""))
            if not follow:
                return
            time.sleep(interval)
    except KeyboardInterrupt:  # --follow ends with Ctrl-C
        return


def load_mlflow_reference(model_uri: str) -> None:
    """`monitor reference load --mlflow models:/NAME@ALIAS`: the version's reference and feature profile
    to Redis, for (NAME, its registry version)."""
    try:
        registry = _registry(True)
        name, version = registry.resolve_uri(model_uri)
        card = registry.card(name, version)
        meta = _load_reference(card)
    except MonitorError as exc:
        raise click.ClickException(str(exc)) from None
    console.print(f"reference of {card.name}:{card.version}: {meta['n']} test-split scores loaded into Redis "
                  f"(from {model_uri})" + (f", AUC {float(meta['auc']):.4f}" if meta.get("auc") is not None else ""))
