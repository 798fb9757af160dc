"""The README harness (tests/readme_commands.py) on synthetic markdown: a renamed model or flag fails it.

These commands fail before touching any broker or Redis, so no infrastructure is needed here; the
documents themselves run in tests/integration/test_readme_commands.py.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.readme_commands import ReadmeRunner, extract_blocks

ROOT = Path(__file__).resolve().parents[2]


def run_markdown(text: str, tmp_path: Path, **kwargs) -> ReadmeRunner:
    env = dict(os.environ, PYTHONPATH=str(ROOT), MONITOR_DATA_DIR=str(tmp_path),
               MONITOR_MODELS_DIR=str(tmp_path / "models"), MONITOR_MODELS_LEDGER=str(tmp_path.parent / "ledger.json"))
    runner = ReadmeRunner(tmp_path, env, **kwargs)
    runner.run_blocks(extract_blocks(text, "SYNTHETIC.md"))
    return runner


def test_a_wrong_model_name_fails_the_run(tmp_path):
    md = ("Score real data:\n\n```bash\n"
          "monitor produce --dataset lendingclub --model lendingclub-default   # the registry says lendingclub_default\n"
          "```\n")
    runner = run_markdown(md, tmp_path)
    [failure] = runner.failures()
    assert failure.command.source == "SYNTHETIC.md:4"
    assert "no registered model 'lendingclub-default'" in failure.detail


def test_a_renamed_flag_fails_the_run(tmp_path):
    md = "```sh\nmonitor state --windw cumulative\n```\n"
    [failure] = run_markdown(md, tmp_path).failures()
    assert "exit 2" in failure.detail and "No such option" in failure.detail


def test_a_command_as_written_passes_and_its_expected_output_is_checked(tmp_path):
    md = "```bash\nmonitor rules export --prometheus \\\n  --output rules.yml   # Prometheus rules\n```\n"
    runner = run_markdown(md, tmp_path, expect=[(r"rules export", "wrote rules.yml")])
    assert [o.status for o in runner.outcomes] == ["ok"] and (tmp_path / "rules.yml").exists()
    runner = run_markdown(md, tmp_path, expect=[(r"rules export", "wrote alerts.yml")])
    assert "output lacks 'wrote alerts.yml'" in runner.failures()[0].detail


def test_skips_are_explicit_and_a_pipe_that_fails_fails(tmp_path):
    md = "```bash\nmonitor bench --quick\necho x | grep -q y | cat\n```\n"
    runner = run_markdown(md, tmp_path, skips=[(r"^monitor bench", "takes minutes")])
    assert [(o.status, o.detail) for o in runner.outcomes][0] == ("skipped", "takes minutes")
    assert runner.outcomes[1].status == "failed"  # pipefail: `grep` failing is not hidden by `| cat`


def test_file_blocks_are_saved_and_ports_rewritten(tmp_path):
    md = ("<!-- save as body.json -->\n<!-- example: x request -->\n```json\n{\"a\": 1}\n```\n\n"
          "```bash\ncat body.json && echo 127.0.0.1:19092\n```\n")
    runner = run_markdown(md, tmp_path, ports={"19092": "41234"}, expect=[(r"^cat", '{"a": 1}\n127.0.0.1:41234')])
    assert [o.status for o in runner.outcomes] == ["ok"]


def test_a_skipped_command_still_has_its_flags_checked(tmp_path):
    md = "```bash\nmonitor faults --scenario kills --records 1000000 --kills 5\nmonitor faults --scenario kills --recordz 10\n```\n"
    runner = run_markdown(md, tmp_path, skips=[(r"^monitor faults", "takes minutes")], dry_parse=[r"^monitor faults"])
    assert [o.status for o in runner.outcomes] == ["skipped", "failed"]
    assert runner.outcomes[0].detail == "takes minutes (flags checked)"
    assert "unrecognized arguments: --recordz" in runner.outcomes[1].detail
