"""Run the shell commands that README.md and docs/*.md show, as written.

The documents are the spec: every shell block (```bash, ```sh, ```shell, ```console, and unlabelled
blocks whose first line starts with a command) is cut into command lines (``\\`` continuations joined,
comment-only lines dropped, a ``$ `` prompt removed) and each line is run by bash, in order, in one
working directory, asserting exit status 0. The only changes made to a command are in
:meth:`ReadmeRunner.rewrite`: the default ports (19092, 16379, 19093, 8000) become the test's free
ports, so that the run never meets another process on this machine. What cannot run here is named in
a reviewed skip list (each with its reason) given by the caller; a skip that matches no command fails
the test that reviews it, so the list cannot go stale.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

SHELL_LANGUAGES = {"bash", "sh", "shell", "console", ""}
FENCE = re.compile(r"^```([\w+-]*)\s*$")
SAVE_AS = re.compile(r"^<!-- save as (\S+) -->$")  # before a block (among other comment lines): a file to write
DEFAULT_PORTS = ("19092", "16379", "19093", "8000")


@dataclass(frozen=True)
class Command:
    """One command line of a document: where it is and its text (continuations joined)."""

    source: str  # "README.md:31"
    text: str

    @property
    def background(self) -> bool:
        """True for ``cmd &``: the README starts a long-running process and goes on."""
        return self.without_comment().endswith("&") and not self.without_comment().endswith("&&")

    def without_comment(self) -> str:
        """The text with a trailing shell comment removed (quotes respected).

        >>> Command("x", "redis-cli GET '#3' # a comment").without_comment()
        "redis-cli GET '#3'"
        >>> Command("x", "monitor worker &   # the worker").without_comment()
        'monitor worker &'
        """
        quote, out = None, []
        for i, ch in enumerate(self.text):
            if quote:
                quote = None if ch == quote else quote
            elif ch in "'\"":
                quote = ch
            elif ch == "#" and (i == 0 or self.text[i - 1].isspace()):
                break
            out.append(ch)
        return "".join(out).strip()


@dataclass
class Block:
    """A fenced block: its document position, language and command lines."""

    source: str
    language: str
    commands: list[Command] = field(default_factory=list)
    save_as: str | None = None  # a file block: the document says to save it under this name
    content: str = ""


def _starts_with_command(line: str) -> bool:
    """An unlabelled block is run only when its first word is a program (not a diagram or metrics text).

    >>> _starts_with_command("monitor infra up"), _starts_with_command("producer ──> credit-records")
    (True, False)
    >>> _starts_with_command('credit_monitor_records{model="synthetic"} 3000.0')
    False
    """
    word = line.split(maxsplit=1)[0] if line.split() else ""
    return bool(re.fullmatch(r"[A-Za-z][\w.-]*", word)) and shutil.which(word) is not None


def command_lines(body: list[str], source: str, first_line: int) -> list[Command]:
    """Join ``\\`` continuations, drop blank and comment-only lines and ``$ `` prompts.

    >>> [c.text for c in command_lines(["# setup", "$ echo a \\\\", "  b   # c", "", "ls"], "R", 1)]
    ['echo a b   # c', 'ls']
    """
    commands, pending, start = [], "", first_line
    for offset, raw in enumerate(body):
        line = raw.rstrip()
        if not pending:
            start = first_line + offset
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            line = stripped[2:] if stripped.startswith("$ ") else stripped
        else:
            line = line.strip()
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        commands.append(Command(f"{source}:{start}", pending + line))
        pending = ""
    return commands


def _save_as(before: list[str]) -> str | None:
    """The file name of a ``<!-- save as NAME -->`` line among the comment lines just above a fence.

    >>> _save_as(["text", "<!-- save as scores.json -->", "<!-- example: x request -->"])
    'scores.json'
    >>> _save_as(["<!-- save as a.json -->", "prose", "<!-- example: x -->"]) is None
    True
    """
    for line in reversed(before):
        line = line.strip()
        if not (line.startswith("<!--") and line.endswith("-->")):
            return None
        match = SAVE_AS.match(line)
        if match:
            return match.group(1)
    return None


def extract_blocks(text: str, source: str) -> list[Block]:
    """The shell blocks of a markdown text, in order.

    >>> md = "x\\n```bash\\nmonitor state   # table\\n```\\n```json\\n{}\\n```\\n```\\nproducer -> x\\n```\\n"
    >>> [(b.source, [c.text for c in b.commands]) for b in extract_blocks(md, "R.md")]
    [('R.md:2', ['monitor state   # table'])]
    """
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        match = FENCE.match(lines[i].strip())
        if not match:
            i += 1
            continue
        language, start = match.group(1).lower(), i
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), len(lines))
        body = lines[start + 1:end]
        save_as = _save_as(lines[:start])
        if save_as:
            blocks.append(Block(f"{source}:{start + 1}", language, save_as=save_as, content="\n".join(body) + "\n"))
            i = end + 1
            continue
        commands = command_lines(body, source, start + 2)
        if language in SHELL_LANGUAGES and commands and (language or _starts_with_command(commands[0].text)):
            blocks.append(Block(f"{source}:{start + 1}", language, commands))
        i = end + 1
    return blocks


def document_blocks(root: Path) -> list[Block]:
    """README.md then docs/*.md (sorted), as a reader meets them."""
    paths = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    return [b for p in paths for b in extract_blocks(p.read_text(), str(p.relative_to(root)))]


@dataclass
class Outcome:
    command: Command
    ran: str  # the command as run, after rewrite; "" when skipped
    status: str  # "ok", "failed", "skipped", "background"
    detail: str = ""
    seconds: float = 0.0  # wall time, for the report (never asserted)


class ReadmeRunner:
    """Runs documents' commands in ``cwd`` with ``env``; collects every outcome, never stops at one.

    ``skips``: (regex on the command without its comment, reason). ``ports``: default port -> test port.
    ``expect``: (regex, output fragment) that a matching command's stdout+stderr must contain.
    ``timed``: (regex, seconds): commands that run until interrupted (``--follow``): SIGINT after that
    long, then exit status 0 expected. ``servers``: (regex, port): foreground servers (``monitor api``)
    started in the background, the next command waiting for their port.
    ``deferred``: regexes of commands run after every block (``monitor infra down``).
    ``replace``: (regex, replacement) applied after the ports (``monitor api`` -> ``--port`` of the test).
    ``eventually``: (regex, seconds): a command reading what the worker computes is retried until it
    succeeds or that long has passed (the reader runs it seconds after publishing, not at once).
    ``dry_parse``: regexes of skipped commands whose flags are still checked, all at the end in one
    process (tests/readme_dryparse.py: each stops right after its argparse parse).
    """

    def __init__(self, cwd: Path, env: dict[str, str], *, ports: dict[str, str] | None = None,
                 skips: list[tuple[str, str]] = (), expect: list[tuple[str, str]] = (),
                 timed: list[tuple[str, float]] = (), servers: list[tuple[str, int]] = (),
                 deferred: list[str] = (), replace: list[tuple[str, str]] = (),
                 eventually: list[tuple[str, float]] = (), dry_parse: list[str] = (),
                 timeout_s: float = 300.0) -> None:
        self.cwd, self.env, self.ports = cwd, env, dict(ports or {})
        self.skips, self.expect, self.timed = list(skips), list(expect), list(timed)
        self.servers, self.deferred_patterns, self.timeout_s = list(servers), list(deferred), timeout_s
        self.replace, self.eventually, self.dry_parse = list(replace), list(eventually), list(dry_parse)
        self.outcomes: list[Outcome] = []
        self.background: list[tuple[Command, subprocess.Popen]] = []
        self.deferred: list[Command] = []
        self.flag_checks: list[Outcome] = []

    def rewrite(self, text: str) -> str:
        """The command as run: default ports replaced by the test's, whole numbers only.

        >>> ReadmeRunner(Path("."), {}, ports={"19092": "41000"}).rewrite("kcat -b 127.0.0.1:19092 -P x190921")
        'kcat -b 127.0.0.1:41000 -P x190921'
        """
        for default, port in self.ports.items():
            text = re.sub(rf"(?<!\d){default}(?!\d)", port, text)
        for pattern, replacement in self.replace:
            text = re.sub(pattern, replacement, text)
        return text

    @staticmethod
    def _match(rules, command: Command):
        return next((rule for rule in rules if re.search(rule[0], command.without_comment())), None)

    def run_blocks(self, blocks: list[Block]) -> list[Outcome]:
        """Every block in order, then the deferred commands; returns the outcomes."""
        for block in blocks:
            if block.save_as:
                (self.cwd / block.save_as).write_text(block.content)
            for command in block.commands:
                self.run(command)
        for command in self.deferred:
            self.run(command, deferring=False)
        self.check_flags()
        return self.outcomes

    def check_flags(self) -> None:
        """The skipped commands' flags, parsed by their own parsers in one process (tests/readme_dryparse.py)."""
        if not self.flag_checks:
            return
        argvs = [shlex.split(self.rewrite(o.command.without_comment())) for o in self.flag_checks]
        done = subprocess.run([sys.executable, "-m", "tests.readme_dryparse"], input=json.dumps(argvs), cwd=self.cwd,
                              env=self.env, capture_output=True, text=True, timeout=300)
        results = json.loads(done.stdout) if done.returncode == 0 else [(False, done.stderr[-800:])] * len(argvs)
        for outcome, (ok, message) in zip(self.flag_checks, results):
            if ok:
                outcome.detail += " (flags checked)"
            else:
                outcome.status, outcome.detail = "failed", f"flags refused: {message}"

    def run(self, command: Command, deferring: bool = True) -> Outcome:
        """Run one command (or skip, background, defer it) and record the outcome with its wall time."""
        started = time.monotonic()
        outcome = self._run(command, deferring)
        outcome.seconds = time.monotonic() - started
        return outcome

    def _run(self, command: Command, deferring: bool) -> Outcome:
        skip = self._match(self.skips, command)
        if skip:
            outcome = self._record(Outcome(command, "", "skipped", skip[1]))
            if any(re.search(p, command.without_comment()) for p in self.dry_parse):
                self.flag_checks.append(outcome)
            return outcome
        if deferring and any(re.search(p, command.without_comment()) for p in self.deferred_patterns):
            self.deferred.append(command)
            return Outcome(command, "", "deferred")
        text = self.rewrite(command.without_comment())
        server = self._match(self.servers, command)
        if command.background or server:
            return self._start_background(command, text.rstrip("&").strip(), server[1] if server else None)
        if re.match(r"export\s", text):
            return self._export(command, text)
        timed = self._match(self.timed, command)
        if timed:
            return self._run_timed(command, text, timed[1])
        retry = self._match(self.eventually, command)
        deadline = time.monotonic() + (retry[1] if retry else 0)
        while True:
            try:
                done = subprocess.run(["bash", "-o", "pipefail", "-c", text], cwd=self.cwd, env=self.env,
                                      capture_output=True, text=True, timeout=self.timeout_s)
            except subprocess.TimeoutExpired:
                return self._record(Outcome(command, text, "failed", f"timed out after {self.timeout_s} s"))
            outcome = self._judge(command, text, done.returncode, done.stdout + done.stderr)
            if outcome.status == "ok" or time.monotonic() > deadline:
                return self._record(outcome)
            time.sleep(1.0)

    def _judge(self, command: Command, text: str, returncode: int, output: str, check_output: bool = True) -> Outcome:
        """The outcome of a finished command: exit status 0 and, when one is expected, the fragment."""
        if returncode != 0:
            return Outcome(command, text, "failed", f"exit {returncode}: {output[-1500:]}")
        fragment = self._match(self.expect, command) if check_output else None
        if fragment and fragment[1] not in output:
            return Outcome(command, text, "failed", f"output lacks {fragment[1]!r}: {output[-1500:]}")
        return Outcome(command, text, "ok", output[-300:])

    def _export(self, command: Command, text: str) -> Outcome:
        """``export NAME=...``: as in the reader's shell, the variables hold for the commands after it."""
        done = subprocess.run(["bash", "-o", "pipefail", "-c", f"{text} && env -0"], cwd=self.cwd, env=self.env,
                              capture_output=True, text=True, timeout=self.timeout_s)
        if done.returncode == 0:
            self.env = dict(item.split("=", 1) for item in done.stdout.split("\0") if "=" in item)
        return self._record(self._judge(command, text, done.returncode, done.stderr))

    def _start_background(self, command: Command, text: str, port: int | None) -> Outcome:
        log = open(self.cwd / f"background-{len(self.background)}.log", "w")
        proc = subprocess.Popen(["bash", "-c", f"exec {text}"], cwd=self.cwd, env=self.env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.background.append((command, proc))
        if port is not None:
            deadline = time.monotonic() + 60
            while not _port_open(port) and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
        time.sleep(1.0)  # a process that dies on start (bad flag) is caught here, not later
        if proc.poll() is not None:
            return self._record(Outcome(command, text, "failed", f"exited {proc.returncode} at once: "
                                        f"{Path(log.name).read_text()[-1500:]}"))
        return self._record(Outcome(command, text, "background"))

    def _run_timed(self, command: Command, text: str, seconds: float) -> Outcome:
        proc = subprocess.Popen(["bash", "-c", f"exec {text}"], cwd=self.cwd, env=self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=seconds)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)  # what the reader does: Ctrl-C
            output, _ = proc.communicate(timeout=30)
        return self._record(self._judge(command, text, proc.returncode, output))

    def _record(self, outcome: Outcome) -> Outcome:
        self.outcomes.append(outcome)
        return outcome

    def stop_background(self) -> None:
        """Stop the background processes (SIGTERM to their own process group, then SIGKILL)."""
        for command, proc in reversed(self.background):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()

    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    def report(self) -> str:
        """One line per command: status, where, what ran (or why skipped)."""
        return "\n".join(f"{o.status:10} {o.seconds:6.1f}s {o.command.source:24} {o.ran or o.command.text}"
                         + (f"\n           -> {o.detail}" if o.status in ("failed", "skipped") else "")
                         for o in self.outcomes)


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0
