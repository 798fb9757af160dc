"""Every command block of README.md and docs/*.md, run as written on the embedded broker and Redis.

One run through the documents in reading order, in a fresh working directory (a copy of `deploy/`,
as in the repository): `monitor infra up` (the README's first command) starts Tansu and
redis-server on free ports given by MONITOR_*, the worker, `monitor notify`, Alertmanager and
`monitor api` are started in the background where the documents start them, and everything is
stopped at the end. The harness is tests/readme_commands.py; its own tests are
tests/unit/test_readme_harness.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from monitor.ops import infra
from monitor.ops.processes import settings_env
from monitor.settings import Settings
from tests.readme_commands import ReadmeRunner, document_blocks

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

# Reviewed: what cannot run here, and why. Each entry must match a command of the documents
# (test_every_skip_matches_a_command).
SKIPS = [
    (r"^bash scripts/demo", "installs with apt (scripts/setup) and runs the whole demo on its own; "
                            "its parts are the commands below"),
    (r"^bash scripts/test", "the test suite itself (recursion)"),
    (r"^monitor faults", "fault runs take minutes; every scenario runs small in tests/integration/test_faults.py"),
    (r"^monitor bench(?!.*--list)", "benchmarks take minutes; tests/integration/test_bench_smoke.py runs them tiny"),
    (r"^python -m monitor\.bench(?!.*--help)", "benchmarks take minutes (docs/benchmarks.md)"),
    (r"^python -m monitor\.api\.bench(?!.*--help)", "API load benchmark: 20 s x 2 of 200 clients plus setup"),
    (r"^(\S+\s*\|\s*)?kcat\b|\| kcat\b", "shown for Apache Kafka: Debian 12's kcat (librdkafka 2.0.2) cannot "
                                         "talk to the embedded Tansu broker; tests/integration/test_cli_and_kcat.py "
                                         "runs kcat with a newer librdkafka"),
]


def test_every_skip_matches_a_command():
    """A skip that no longer matches anything is stale: remove it (the list stays reviewed)."""
    commands = [c.without_comment() for b in document_blocks(ROOT) for c in b.commands]
    import re

    stale = [pattern for pattern, _ in SKIPS if not any(re.search(pattern, c) for c in commands)]
    assert stale == []


@pytest.fixture
def readme_runner(tmp_path):
    """A runner in a fresh directory, MONITOR_* on free ports; stops whatever the documents started."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(ROOT / "deploy", work / "deploy")
    ports = {"19092": infra.free_port(), "16379": infra.free_port(), "19093": infra.free_port(),
             "8000": infra.free_port()}
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{ports['19092']}",
                        redis_url=f"redis://127.0.0.1:{ports['16379']}/0",
                        alertmanager_url=f"http://127.0.0.1:{ports['19093']}",
                        dashboard_url=f"http://127.0.0.1:{ports['8000']}",
                        run_dir=work / ".run", models_dir=work / ".run" / "models", data_dir=work)
    env = settings_env(settings)
    env["PYTHONPATH"] = str(ROOT)  # this checkout's code, also from another working directory
    runner = ReadmeRunner(
        work, env, ports={k: str(v) for k, v in ports.items()}, skips=SKIPS,
        replace=[(r"^monitor api$", f"monitor api --port {ports['8000']}")],
        servers=[(r"^monitor api(?! token)\b", ports["8000"]), (r"^prometheus-alertmanager\b", ports["19093"])],
        timed=[(r"^monitor alerts --follow", 8.0)],
        deferred=[r"^monitor infra down"],
        eventually=[(r"^redis-cli ", 60.0), (r"^amtool alert query", 120.0)],
        dry_parse=[r"^monitor (faults|bench)\b", r"^python -m monitor\.(bench|api\.bench)\b"],
        expect=EXPECT)
    try:
        yield runner
    finally:
        runner.stop_background()
        for svc in reversed(infra.services(settings)):
            svc.stop()


# What some commands must print (regex on the command, fragment of stdout + stderr).
EXPECT = [
    (r"^python -m producers\.samples", "wrote challenge.csv"),
    (r"^monitor reference load --model default --file test_base.csv", "10000 scores"),
    (r"^monitor produce --file october\.csv\.gz", "published 5000 records"),
    (r"^monitor produce --dataset lendingclub --model lendingclub_default", "published 10000 records"),
    (r"--labels separate", "outcomes to credit-outcomes"),
    (r"\| monitor publish", "published 1 messages to credit-records"),
    (r"^monitor models train --dataset lendingclub --kind default", "trained lendingclub_default"),
    (r"^monitor models train .*--mlflow --alias champion", "registered in MLflow as models:/lc_mlflow/1 (alias champion)"),
    (r"^monitor reference load --mlflow models:/lc_mlflow@champion", "lc_mlflow:1: 2988 test-split scores loaded"),
    (r"^MONITOR_MLFLOW_TRACKING_URI=\S+ monitor produce --dataset lendingclub --model lc_mlflow", "scored with lc_mlflow:1"),
    (r"^monitor state$", "2024-03"),
    (r"BITFIELD_RO", "1"),
    (r"^amtool alert query", "CreditMonitor"),
    (r"HGETALL 'cm:\{default:1\}:count:2024-03'", "bad"),
    (r"HGET 'cm:\{default:1\}:metrics' 2024-03", '"month"'),
    (r"months/2024-05$", '"month":"2024-05"'),
    (r"etc/passwd", "outside the data directory"),
    (r"performance/nope", "unknown model 'nope'"),
    (r'"TARGET": 2', "TARGET must be 0, 1 or null"),
    (r"performance/enhanced", '"auc":0.875'),
    (r"performance/default -H 'content-type: application/json' -d @features", '"scored_by_model":6'),
    (r"aderencia/ -H 'content-type: application/json' -d '\{\"path\": \"data/", '"records":742'),
]


def test_readme_and_docs_commands_run_as_written(readme_runner):
    blocks = document_blocks(ROOT)
    readme_runner.run_blocks(blocks)
    report = readme_runner.report()
    print(report)
    ran = [o for o in readme_runner.outcomes if o.status in ("ok", "background")]
    assert len(ran) >= 40, report
    assert readme_runner.failures() == [], "\n\n" + report
