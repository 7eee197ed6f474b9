"""The scenario list (tests/scenarios.conf) and the verdict on one run.

One scenario per line, words split the way a shell splits them (quote a
value that holds spaces; a line ending in a backslash continues on the
next; '#' starts a comment):

    NAME [key=value | flag]... purpose='one line on what it proves'

See docs/harness.md for every field. parse() reports each malformed line
with its file and line number; judge() decides pass/fail for a Result.
"""

import fnmatch
import re
import shlex

from . import actions as actmod
from . import ktap
from . import qemu as qemumod

NAME_RE = re.compile(r"^[a-z][a-z0-9]*\.[A-Za-z0-9_.+-]+$")
DEFAULT_TIMEOUT = 60.0

FIELDS = {
    "cpus": "number of CPUs, 1..255 (default 1)",
    "machine": "pc or q35 (default pc)",
    "cmdline": "kernel command line",
    "qemu": "extra QEMU arguments, split like a shell does (repeatable)",
    "timeout": "seconds before the run is killed and failed (default %g)" % DEFAULT_TIMEOUT,
    "kernel": "kernel ELF to boot (default %s)" % qemumod.DEFAULT_KERNEL,
    "iso": "boot this GRUB ISO instead of the kernel",
    "memory": "guest RAM (default 256M)",
    "exit": "expected status: the value the kernel writes to isa-debug-exit, "
            "123 guest reset, 124 timeout",
    "expect": "regex that must appear on the console (repeatable)",
    "reject": "regex that must not appear on the console (repeatable)",
    "qmp": "QMP injection TRIGGER:COMMAND, see actions (repeatable)",
    "send": "console input TRIGGER:TEXT (repeatable)",
    "purpose": "one line on what the scenario proves (mandatory)",
}
FLAGS = {
    "ktap": "expect exit 0 and KTAP with every plan met and every result ok",
    "panic": "expect a kernel panic (exit 2)",
    "icount": "deterministic virtual time (-icount shift=0,sleep=off)",
    "record": "record the run for replay (implies icount; needs cpus=1)",
}
REPEATABLE = ("qemu", "expect", "reject", "qmp", "send")


class ConfError(ValueError):
    """A malformed scenario file; the message names file and line."""


class Scenario:
    def __init__(self, name, path="?", lineno=0):
        self.name = name
        self.path = path
        self.lineno = lineno
        self.cpus = 1
        self.machine = "pc"
        self.cmdline = ""
        self.qemu = []
        self.timeout = DEFAULT_TIMEOUT
        self.kernel = None
        self.iso = None
        self.memory = "256M"
        self.outcome = None        # 'ktap', or an int exit status
        self.expect = []           # compiled regexes
        self.reject = []
        self.qmp = []              # actions.Action
        self.send = []
        self.purpose = None
        self.icount = False
        self.record = False

    @property
    def area(self):
        return self.name.split(".", 1)[0]

    def outcome_text(self):
        if self.outcome == "ktap":
            return "ktap"
        if self.outcome == 2:
            return "panic"
        return "exit=%d" % self.outcome

    def config(self, record=None):
        """A qemu.Config for this scenario (optionally recording to a file)."""
        return qemumod.Config(kernel=self.kernel, iso=self.iso, smp=self.cpus,
                              machine=self.machine, cmdline=self.cmdline,
                              icount=self.icount or bool(record), qemu_args=self.qemu,
                              record=record, memory=self.memory)

    def nmikit_qemu_args(self):
        """nmikit-qemu options that boot this scenario the same way."""
        out = []
        if self.kernel:
            out += ["--kernel", self.kernel]
        if self.iso:
            out += ["--iso", self.iso]
        out += ["--smp", str(self.cpus), "--machine", self.machine]
        if self.cmdline:
            out += ["--cmdline", self.cmdline]
        if self.memory != "256M":
            out += ["--memory", self.memory]
        for arg in self.qemu:
            out += ["--qemu-arg", arg]
        return out


def _split_lines(text):
    """Yield (first line number, logical line) with backslash continuations
    joined and comments left to shlex."""
    buf = []
    start = None
    for lineno, line in enumerate(text.splitlines(), 1):
        if start is None:
            start = lineno
        stripped = line.rstrip()
        if stripped.endswith("\\") and not stripped.endswith("\\\\") \
                and not (not buf and stripped.lstrip().startswith("#")):
            buf.append(stripped[:-1])
            continue
        buf.append(line)
        yield start, " ".join(buf)
        buf = []
        start = None
    if buf:
        yield start, " ".join(buf)


def parse(text, path="tests/scenarios.conf"):
    """Parse scenario text; return [Scenario]. Raises ConfError listing
    every malformed line (not just the first)."""
    scenarios = []
    errors = []
    seen = {}
    for lineno, line in _split_lines(text):
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:
            errors.append("%s:%d: cannot split the line: %s" % (path, lineno, exc))
            continue
        if not words:
            continue
        try:
            sc = _parse_words(words, path, lineno)
        except ConfError as exc:
            errors.append(str(exc))
            continue
        if sc.name in seen:
            errors.append("%s:%d: %s: duplicate name (first on line %d)" % (
                path, lineno, sc.name, seen[sc.name]))
            continue
        seen[sc.name] = lineno
        scenarios.append(sc)
    if errors:
        raise ConfError("\n".join(errors))
    return scenarios


def _parse_words(words, path, lineno):
    name = words[0]
    where = "%s:%d: %s" % (path, lineno, name)

    def fail(msg):
        raise ConfError("%s: %s" % (where, msg))

    if "=" in name or not NAME_RE.match(name):
        fail("a line starts with the scenario name AREA.NAME (letters, digits, "
             "'._+-'), e.g. boot.smp4.q35")
    sc = Scenario(name, path, lineno)
    given = set()
    outcomes = []
    for word in words[1:]:
        key, eq, value = word.partition("=")
        if not eq:
            if key not in FLAGS:
                hint = " (did you mean %s=...?)" % key if key in FIELDS else ""
                fail("unknown flag '%s'%s; flags: %s" % (key, hint, ", ".join(sorted(FLAGS))))
            if key in ("ktap", "panic"):
                outcomes.append(key)
            elif key == "icount":
                sc.icount = True
            elif key == "record":
                sc.record = True
                sc.icount = True
            continue
        if key not in FIELDS:
            fail("unknown field '%s'; fields: %s" % (key, ", ".join(sorted(FIELDS))))
        if key in given and key not in REPEATABLE:
            fail("field '%s' given twice" % key)
        given.add(key)
        if key == "cpus":
            if not value.isdigit() or not 1 <= int(value) <= 255:
                fail("cpus=%s: need a number 1..255" % value)
            sc.cpus = int(value)
        elif key == "machine":
            if value not in ("pc", "q35"):
                fail("machine=%s: need pc or q35" % value)
            sc.machine = value
        elif key == "cmdline":
            sc.cmdline = value
        elif key == "qemu":
            try:
                shlex.split(value)
            except ValueError as exc:
                fail("qemu=%s: %s" % (value, exc))
            sc.qemu.append(value)
        elif key == "timeout":
            try:
                sc.timeout = float(value)
            except ValueError:
                fail("timeout=%s: need a number of seconds" % value)
            if not sc.timeout > 0:
                fail("timeout=%s: must be above 0" % value)
        elif key == "kernel":
            sc.kernel = value
        elif key == "iso":
            sc.iso = value
        elif key == "memory":
            if not re.fullmatch(r"\d+[MG]?", value):
                fail("memory=%s: need a size such as 256M or 1G" % value)
            sc.memory = value
        elif key == "exit":
            if not value.isdigit() or int(value) > 255:
                fail("exit=%s: need a status 0..255" % value)
            outcomes.append(int(value))
        elif key in ("expect", "reject"):
            try:
                rx = re.compile(value, re.MULTILINE)
            except re.error as exc:
                fail("%s=%s: bad regular expression: %s" % (key, value, exc))
            getattr(sc, key).append(rx)
        elif key in ("qmp", "send"):
            try:
                getattr(sc, key).append(actmod.parse(key, value))
            except actmod.SpecError as exc:
                fail(str(exc))
        elif key == "purpose":
            if not value.strip():
                fail("purpose= is empty")
            sc.purpose = value.strip()
    if sc.purpose is None:
        fail("missing purpose='...' (one line on what the scenario proves)")
    if not outcomes:
        fail("no expected outcome: add ktap, panic or exit=N")
    if len(outcomes) > 1:
        fail("more than one expected outcome (%s): pick one" % ", ".join(map(str, outcomes)))
    sc.outcome = 2 if outcomes[0] == "panic" else outcomes[0]
    if sc.iso and sc.kernel:
        fail("kernel= and iso= exclude each other")
    if sc.iso and sc.cmdline:
        fail("cmdline= needs a kernel: an ISO takes its command line from grub.cfg")
    if sc.record and sc.cpus > 1:
        fail("record needs cpus=1: QEMU 7.2 cannot record more than one CPU")
    if sc.record and sc.iso:
        fail("record cannot boot an ISO (no blkreplay drive)")
    return sc


def load(path):
    with open(path, encoding="utf-8") as fh:
        return parse(fh.read(), path)


def select(scenarios, pattern):
    """Scenarios whose name matches the glob(s) in `pattern` (comma-separated)."""
    if not pattern:
        return list(scenarios)
    globs = [g.strip() for g in pattern.split(",") if g.strip()]
    return [s for s in scenarios if any(fnmatch.fnmatchcase(s.name, g) for g in globs)]


class Verdict:
    def __init__(self):
        self.passed = True
        self.reasons = []
        self.report = None      # ktap.Report

    def fail(self, reason):
        self.passed = False
        self.reasons.append(reason)


def judge(sc, res):
    """Decide whether Result `res` is what Scenario `sc` expects."""
    v = Verdict()
    console = res.console
    v.report = ktap.parse(console)
    want = 0 if sc.outcome == "ktap" else sc.outcome
    if res.status != want:
        if res.timed_out:
            v.fail("%s (expected %s)" % (res.describe(), sc.outcome_text()))
        else:
            v.fail("%s, expected %s" % (res.describe(), sc.outcome_text()))
    if sc.outcome == "ktap":
        for problem in ktap.problems(v.report):
            v.fail("KTAP: " + problem)
    for rx in sc.expect:
        if not rx.search(console):
            v.fail("expect=%s: not found on the console" % rx.pattern)
    for rx in sc.reject:
        m = rx.search(console)
        if m:
            line = console.count("\n", 0, m.start()) + 1
            v.fail("reject=%s: found on console line %d: %s" % (
                rx.pattern, line, console.splitlines()[line - 1].strip()[:160]))
    for when, what, outcome in res.actions_log:
        if outcome.startswith("FAILED"):
            v.fail("injection %s at %.2f s %s" % (what, when, outcome))
    return v
