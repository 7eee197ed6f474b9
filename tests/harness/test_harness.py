#!/usr/bin/env python3
"""Self-tests of the QEMU harness, printed as TAP.

    python3 tests/harness/test_harness.py [--unit] [NAME-SUBSTRING...]

The first group needs no kernel and no QEMU: KTAP parsing (good, failing,
truncated, prefixed, malformed output), the scenario file format and its
error messages, injection specs, QEMU command lines and the exit-status
mapping. The second group builds tests/harness/fakekernel.c (a 32-bit
Multiboot kernel) and runs tools/nmikit-qemu, tools/run-scenarios and
tools/test-all for real; it is skipped (with a reason) when gcc -m32 or
QEMU is missing, or with --unit.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TOOLS = os.path.join(ROOT, "tools")
sys.dont_write_bytecode = True     # keep __pycache__ out of the tree
sys.path.insert(0, TOOLS)

from harness import actions, ktap, qemu, scenarios  # noqa: E402

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


class Skip(Exception):
    pass


def check(cond, msg="check failed"):
    if not cond:
        raise AssertionError(msg)


def equal(got, want, what="value"):
    if got != want:
        raise AssertionError("%s: got %r, want %r" % (what, got, want))


def raises(exc_type, fn, *args, match=None, **kw):
    try:
        fn(*args, **kw)
    except exc_type as exc:
        if match is not None and not re.search(match, str(exc)):
            raise AssertionError("error %r does not match /%s/" % (str(exc), match))
        return exc
    raise AssertionError("%s not raised" % exc_type.__name__)


# --------------------------------------------------------------------------
# KTAP
GOOD = """\
boot log line
KTAP version 1
1..2
    KTAP version 1
    # Subtest: nmi
    1..3
    ok 1 nested_nmi_at_every_boundary
[cpu1] unrelated log output
    ok 2 latch_of_one
    ok 3 pmu_absent # SKIP no PMU under TCG
ok 1 nmi
ok 2 - single_case
"""


@test
def ktap_good_nested_document_passes():
    rep = ktap.parse(GOOD)
    equal(ktap.problems(rep), [], "problems")
    equal(rep.leaf_counts(), (4, 0), "leaf counts")
    equal(len(rep.documents), 1, "documents")
    doc = rep.documents[0]
    equal(doc.plan, 2, "top plan")
    equal(doc.results[0].subtest.name, "nmi", "subtest name")
    equal(doc.results[0].subtest.plan, 3, "subtest plan")
    equal(rep.diagnostics(), [
        "    ok 1 - nested_nmi_at_every_boundary",
        "    ok 2 - latch_of_one",
        "    ok 3 - pmu_absent # SKIP no PMU under TCG",
        "ok 1 - nmi",
        "ok 2 - single_case"], "diagnostics")


@test
def ktap_failure_is_reported_with_its_name():
    rep = ktap.parse(GOOD.replace("    ok 2 latch_of_one", "    not ok 2 latch_of_one"))
    probs = ktap.problems(rep)
    check(any("not ok 2 - latch_of_one" in p for p in probs), probs)
    equal(rep.leaf_counts(), (3, 1), "leaf counts")


@test
def ktap_truncated_output_is_a_problem():
    cut = GOOD.split("    ok 3")[0]
    probs = ktap.problems(ktap.parse(cut))
    check(any("never finished" in p for p in probs), probs)
    check(any("planned 2 results but printed 0" in p for p in probs), probs)


@test
def ktap_plan_mismatch_and_numbering():
    probs = ktap.problems(ktap.parse("KTAP version 1\n1..3\nok 1 a\nok 2 b\n"))
    check(any("planned 3 results but printed 2" in p for p in probs), probs)
    probs = ktap.problems(ktap.parse("KTAP version 1\n1..2\nok 1 a\nok 3 b\n"))
    check(any("numbered 3, expected 2" in p for p in probs), probs)
    probs = ktap.problems(ktap.parse("KTAP version 1\nok 1 a\n"))
    check(any("no plan line" in p for p in probs), probs)


@test
def ktap_missing_or_empty_is_a_problem():
    probs = ktap.problems(ktap.parse("just a boot log\nok, nothing else\n"))
    check(probs and "no KTAP output" in probs[0], probs)
    probs = ktap.problems(ktap.parse("KTAP version 1\n1..0\n"))
    check(any("ran no test" in p for p in probs), probs)
    equal(ktap.problems(ktap.parse("KTAP version 1\n1..0\n"), require_tests=False), [],
          "empty plan allowed when asked")


@test
def ktap_with_timestamp_prefix():
    text = "".join("[%12.6f] %s\n" % (i / 1000.0, line)
                   for i, line in enumerate(GOOD.splitlines()))
    text = text.replace("[    0.007000] [cpu1] unrelated", "[    0.007000] cpu1: unrelated")
    rep = ktap.parse(text)
    equal(ktap.problems(rep), [], "problems")
    equal(rep.leaf_counts(), (4, 0), "leaf counts")


@test
def ktap_directives_and_bail_out():
    rep = ktap.parse("KTAP version 1\n1..3\nnot ok 1 a # TODO later\nok 2 b # TIMEOUT\n"
                     "ok 3 c # XFAIL known\n")
    probs = ktap.problems(rep)
    equal(len(probs), 1, "only the TIMEOUT fails: %r" % probs)
    check("TIMEOUT" in probs[0], probs)
    probs = ktap.problems(ktap.parse("KTAP version 1\n1..2\nok 1 a\nBail out! disk gone\n"))
    check(any("bailed out: disk gone" in p for p in probs), probs)


@test
def ktap_two_documents_are_both_judged():
    text = GOOD + "KTAP version 1\n1..1\nnot ok 1 second_run\n"
    rep = ktap.parse(text)
    equal(len(rep.documents), 2, "documents")
    probs = ktap.problems(rep)
    check(any("second_run" in p for p in probs), probs)


@test
def ktap_subtest_without_header():
    rep = ktap.parse("KTAP version 1\n1..1\n    1..2\n    ok 1 x\n    ok 2 y\nok 1 suite\n")
    equal(ktap.problems(rep), [], "problems")
    equal(rep.documents[0].results[0].subtest.name, "suite", "name from the result line")


# --------------------------------------------------------------------------
# scenario file
CONF = r"""
# comment line \
boot.smp4.q35 cpus=4 machine=q35 cmdline='test=boot.* loglevel=7' ktap icount \
    qemu='-global hpet.msi=on' qemu=-no-hpet timeout=30 \
    expect='CPU 3 online' reject='Oops' purpose='boots four CPUs'   # trailing comment
nmi.inject exit=0 qmp='on:ready\x3a go:inject-nmi' qmp='every:0.1-0.2:hmp:nmi' \
    send='once:nmikit> :cpus\n' purpose="injections"
boot.panic panic purpose='x'
"""


@test
def conf_parses_fields_flags_and_continuations():
    items = scenarios.parse(CONF, "t.conf")
    equal([s.name for s in items], ["boot.smp4.q35", "nmi.inject", "boot.panic"], "names")
    sc = items[0]
    equal((sc.cpus, sc.machine, sc.cmdline, sc.timeout), (4, "q35", "test=boot.* loglevel=7",
                                                         30.0), "fields")
    equal(sc.qemu, ["-global hpet.msi=on", "-no-hpet"], "qemu args")
    equal((sc.outcome, sc.icount, sc.record), ("ktap", True, False), "outcome and flags")
    equal([r.pattern for r in sc.expect], ["CPU 3 online"], "expect")
    equal(sc.purpose, "boots four CPUs", "purpose")
    equal(sc.lineno, 3, "line number")
    nmi = items[1]
    equal(nmi.outcome, 0, "exit=0")
    equal(nmi.qmp[0].regex.pattern, r"ready\x3a go", "regex with an escaped colon")
    equal(nmi.qmp[1].payload, ("hmp", "nmi"), "hmp payload")
    equal((nmi.qmp[1].t1, nmi.qmp[1].t2), (0.1, 0.2), "random interval")
    equal(nmi.send[0].payload, b"cpus\n", "send text with escape")
    equal(items[2].outcome, 2, "panic is exit 2")
    equal(items[2].outcome_text(), "panic", "panic text")
    cfg = sc.config()
    equal((cfg.smp, cfg.machine, cfg.icount), (4, "q35", True), "config")


@test
def conf_reports_every_malformed_line_with_its_place():
    bad = textwrap.dedent("""\
        boot.a cpus=two ktap purpose=x
        boot.b ktap
        boot.c purpose=x
        boot.d ktap panic purpose=x
        boot.e machine=isapc ktap purpose=x
        boot.f ktap cpu=4 purpose=x
        boot.g ktap verbose purpose=x
        boot.h ktap expect='(' purpose=x
        boot.i ktap purpose='unclosed
        nameless ktap purpose=x
        boot.j ktap purpose=x
        boot.j ktap purpose=y
        boot.k ktap record cpus=2 purpose=x
        boot.l ktap qmp='sometimes:inject-nmi' purpose=x
        boot.m ktap timeout=0 purpose=x
        boot.n ktap timeout=10 timeout=20 purpose=x
        boot.o ktap iso=x.iso cmdline=y purpose=x
        """)
    exc = raises(scenarios.ConfError, scenarios.parse, bad, "bad.conf")
    lines = str(exc).splitlines()
    want = [
        (1, "cpus=two: need a number"),
        (2, "missing purpose="),
        (3, "no expected outcome"),
        (4, "more than one expected outcome"),
        (5, "machine=isapc: need pc or q35"),
        (6, "unknown field 'cpu'"),
        (7, "unknown flag 'verbose'"),
        (8, "bad regular expression"),
        (9, "cannot split the line"),
        (10, "scenario name AREA.NAME"),
        (12, "duplicate name"),
        (13, "record needs cpus=1"),
        (14, "unknown trigger 'sometimes'"),
        (15, "must be above 0"),
        (16, "given twice"),
        (17, "cmdline= needs a kernel"),
    ]
    equal(len(lines), len(want), "one error per bad line: %s" % "\n".join(lines))
    for line, (lineno, text) in zip(lines, want):
        check(line.startswith("bad.conf:%d: " % lineno), "place: %r" % line)
        check(text in line, "%r lacks %r" % (line, text))


@test
def conf_select_by_glob():
    items = scenarios.parse(CONF)
    equal([s.name for s in scenarios.select(items, "boot.*")], ["boot.smp4.q35", "boot.panic"],
          "boot.*")
    equal([s.name for s in scenarios.select(items, "nmi.*,*.panic")],
          ["nmi.inject", "boot.panic"], "two globs")
    equal(scenarios.select(items, "storm.*"), [], "no match")


@test
def repository_conf_is_valid():
    items = scenarios.load(os.path.join(ROOT, "tests", "scenarios.conf"))
    for sc in items:
        check(sc.purpose, "%s has a purpose" % sc.name)


def fake_result(status=0, console="", timed_out=False):
    res = qemu.Result()
    res.status = status
    res.timed_out = timed_out
    res.timeout = 5
    res.console_bytes = console.encode()
    res.started = True
    return res


@test
def judge_outcomes_and_console_checks():
    sc = scenarios.parse("boot.x ktap expect='nmi' reject='Oops' purpose=p")[0]
    equal(scenarios.judge(sc, fake_result(0, GOOD)).reasons, [], "good run")
    v = scenarios.judge(sc, fake_result(1, GOOD + "Oops: bad\n"))
    check(not v.passed, "fails")
    check(any("exit 1 (tests failed), expected ktap" in r for r in v.reasons), v.reasons)
    check(any("reject=Oops: found on console line 13: Oops: bad" in r for r in v.reasons),
          v.reasons)
    v = scenarios.judge(sc, fake_result(0, "no tests here\n"))
    check(any("no KTAP output" in r for r in v.reasons), v.reasons)
    check(any("expect=nmi: not found" in r for r in v.reasons), v.reasons)
    v = scenarios.judge(sc, fake_result(qemu.STATUS_TIMEOUT, GOOD, timed_out=True))
    check(any(r.startswith("TIMEOUT after 5 s") for r in v.reasons), v.reasons)
    sc = scenarios.parse("boot.y panic purpose=p")[0]
    check(scenarios.judge(sc, fake_result(2, "PANIC")).passed, "panic expected")
    check(not scenarios.judge(sc, fake_result(0, "")).passed, "no panic")


# --------------------------------------------------------------------------
# injection specs
@test
def action_specs_parse():
    a = actions.parse("qmp", "on:NMI test ready:inject-nmi")
    equal((a.trigger, a.regex.pattern, a.payload), ("on", "NMI test ready",
                                                    {"execute": "inject-nmi"}), "on")
    a = actions.parse("qmp", "at:2.5:hmp:mce 0 1 0xb200000000000000 0 0 0")
    equal((a.trigger, a.t1, a.payload), ("at", 2.5, ("hmp", "mce 0 1 0xb200000000000000 0 0 0")),
          "at/hmp")
    a = actions.parse("qmp", 'after:storm start:every:0.01-0.05:json:{"execute":"inject-nmi"}')
    equal((a.after.pattern, a.trigger, a.t1, a.t2), ("storm start", "every", 0.01, 0.05), "after")
    a = actions.parse("send", r"once:nmikit> :help\r\n")
    equal(a.payload, b"help\r\n", "send escapes")


@test
def action_spec_errors_are_clear():
    cases = [("qmp", "inject-nmi", "expected TRIGGER:PAYLOAD"),
             ("qmp", "on:ready", "colon in the REGEX"),
             ("qmp", "on:(:inject-nmi", "bad regular expression"),
             ("qmp", "every:0.5-0.1:inject-nmi", "maximum below its minimum"),
             ("qmp", "every:0:inject-nmi", "above 0"),
             ("qmp", "at:soon:inject-nmi", "not a number"),
             ("qmp", "at:1:", "empty payload"),
             ("qmp", "at:1:json:{bad", "not valid JSON"),
             ("qmp", "at:1:Inject NMI", "unknown QMP payload"),
             ("qmp", "after:x:on:y:inject-nmi", "must be followed by at: or every:")]
    for kind, spec, msg in cases:
        raises(actions.SpecError, actions.parse, kind, spec, match=re.escape(msg))


# --------------------------------------------------------------------------
# QEMU command line and exit status
@test
def exit_status_mapping():
    m = qemu.map_status
    equal(m(1), 0, "V=0")
    equal(m(3), 1, "V=1")
    equal(m(5), 2, "V=2")
    equal(m(0), 0, "QEMU quit normally")
    equal(m(0, shutdown_reason="guest-reset"), qemu.STATUS_RESET, "triple fault")
    equal(m(0, shutdown_reason="host-qmp-quit"), 0, "QMP quit")
    equal(m(None, timed_out=True), qemu.STATUS_TIMEOUT, "timeout")
    equal(m(0, timed_out=True), qemu.STATUS_TIMEOUT, "timeout wins")
    equal(m(1, started=False), qemu.STATUS_QEMU_FAILED, "QEMU failed before the guest ran")
    equal(m(1, stderr="qemu-system-x86_64: -foo: invalid option\n"),
          qemu.STATUS_QEMU_FAILED, "QEMU error message")
    equal(m(1, stderr="qemu-system-x86_64: warning: TCG doesn't support feature\n"), 0,
          "a warning is not an error")
    equal(m(-9), qemu.STATUS_QEMU_FAILED, "killed by a signal")
    equal(m(2), qemu.STATUS_QEMU_FAILED, "even status is not isa-debug-exit")


@test
def qemu_command_lines():
    with tempfile.NamedTemporaryFile(suffix=".elf") as k:
        cfg = qemu.Config(kernel=k.name, smp=4, machine="q35", cmdline="a=b c",
                          icount=True, qemu_args=["-global hpet.msi=on", "-no-hpet"])
        cmd = qemu.build_command(cfg)
        line = " ".join(cmd)
        for want in ("-accel tcg", "-machine q35", "-smp 4", "-m 256M", "-no-reboot",
                     "-serial stdio", "-monitor none",
                     "-device isa-debug-exit,iobase=0xf4,iosize=0x04",
                     "-icount shift=0,sleep=off",
                     "-rtc base=2024-01-01T00:00:00,clock=vm", "-global hpet.msi=on -no-hpet"):
            check(want in line, "%r not in %s" % (want, line))
        equal(cmd[cmd.index("-append") + 1], "a=b c", "cmdline is one argument")
        line = " ".join(qemu.build_command(cfg, interactive=True, control_socket="/x/s"))
        check("-chardev stdio,id=console,mux=on,signal=off -serial chardev:console" in line, line)
        check("-qmp unix:/x/s,server=on,wait=off -S" in line, line)
        cfg = qemu.Config(kernel=k.name, record="/tmp/r.rr")
        line = " ".join(qemu.build_command(cfg))
        check("-icount shift=0,rr=record,rrfile=/tmp/r.rr" in line, line)
        raises(qemu.ConfigError, qemu.build_command,
               qemu.Config(kernel=k.name, smp=2, record="/tmp/r.rr"), match="more than one CPU")
        raises(qemu.ConfigError, qemu.build_command,
               qemu.Config(iso=k.name, cmdline="x"), match="--cmdline needs --kernel")
        raises(qemu.ConfigError, qemu.build_command, qemu.Config(kernel=k.name, smp=0),
               match="1..255")
        raises(qemu.ConfigError, qemu.build_command,
               qemu.Config(kernel=k.name, qemu_args=["-a 'b"]), match="cannot split")
    raises(qemu.ConfigError, qemu.build_command, qemu.Config(kernel="/nonexistent/k.elf"),
           match="no such kernel")


# --------------------------------------------------------------------------
# end to end, on the fake kernel
FAKE = {}


def fake_kernel():
    if "path" in FAKE:
        return FAKE["path"]
    if "skip" in FAKE:
        raise Skip(FAKE["skip"])
    if shutil.which(qemu.QEMU_BINARY) is None:
        FAKE["skip"] = "no %s" % qemu.QEMU_BINARY
        raise Skip(FAKE["skip"])
    out = tempfile.mkdtemp(prefix="nmikit-harness-test-")
    FAKE["dir"] = out
    lds = os.path.join(out, "fake.ld")
    with open(lds, "w") as fh:
        fh.write("ENTRY(_start)\nSECTIONS {\n . = 0x100000;\n"
                 " .text : { *(.multiboot) *(.text*) }\n .rodata : { *(.rodata*) }\n"
                 " .data : { *(.data*) }\n .bss : { *(.bss*) *(COMMON) }\n}\n")
    obj = os.path.join(out, "fake.o")
    elf = os.path.join(out, "fake.elf")
    steps = [["gcc", "-m32", "-ffreestanding", "-fno-pic", "-fno-pie", "-fno-stack-protector",
              "-mno-sse", "-mgeneral-regs-only", "-O2", "-Wall", "-Wextra", "-Werror", "-c",
              os.path.join(HERE, "fakekernel.c"), "-o", obj],
             ["ld", "-m", "elf_i386", "-T", lds, "-o", elf, obj]]
    for cmd in steps:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            FAKE["skip"] = "cannot build the fake kernel (%s): %s" % (
                cmd[0], proc.stdout.strip().splitlines()[-1:] or "")
            raise Skip(FAKE["skip"])
    FAKE["path"] = elf
    return elf


def nmikit_qemu(*args, stdin=subprocess.DEVNULL):
    proc = subprocess.run([os.path.join(TOOLS, "nmikit-qemu"), "--kernel", fake_kernel()] +
                          list(args), stdin=stdin, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr.decode(errors="replace")


@test
def e2e_exit_statuses():
    for cmdline, want in (("exit=0", 0), ("exit=1", 1), ("exit=2", 2),
                          ("triple", qemu.STATUS_RESET)):
        rc, out, err = nmikit_qemu("--cmdline", cmdline, "--timeout", "30")
        equal(rc, want, "status for %s (stderr %s)" % (cmdline, err.strip()))
        check(b"fakekernel: booted" in out, "console reached stdout")
    rc, out, err = nmikit_qemu("--cmdline", "hang", "--timeout", "1.5")
    equal(rc, 124, "timeout status")
    check(out.rstrip().endswith(b"TIMEOUT after 1.5 s"), "TIMEOUT line: %r" % out[-80:])
    rc, out, err = nmikit_qemu("--qemu-arg", "-no-such-option")
    equal(rc, 125, "QEMU failed to start")
    check("-no-such-option" in err, "QEMU's stderr shown: %r" % err)


@test
def e2e_console_bytes_pass_through_unchanged():
    rc, out, err = nmikit_qemu("--cmdline", "bytes")
    equal(rc, 0, "status")
    check(b"bad bytes: \xff\xfe\xc3(\n" in out, "non-UTF-8 bytes kept: %r" % out)
    check(out.endswith(b"partial line without newline"), "partial last line kept")


@test
def e2e_qmp_injections_and_serial_input():
    rc, out, err = nmikit_qemu("--smp", "2", "--cmdline", "nmi=2", "--timeout", "30",
                               "--inject", "once:waiting for:inject-nmi",
                               "--inject", "once:got NMI 1:hmp:nmi")
    equal(rc, 0, "both NMIs arrived (stderr %s)" % err.strip())
    check(b"fake: got NMI 2" in out, "second NMI: %r" % out)
    rc, out, err = nmikit_qemu("--cmdline", "echo", "--timeout", "30",
                               "--send", r"once:type a line:hello\x3a nmikit\n")
    equal(rc, 0, "status")
    check(b"fake: got line: hello: nmikit" in out, "typed line echoed: %r" % out)
    rc, out, err = nmikit_qemu("--cmdline", "echo", "--timeout", "30",
                               "--send", r"once:got line\x3a $:typed at a prompt\n")
    equal(rc, 0, "a prompt without a newline fires its trigger (stderr %s)" % err.strip())
    check(b"fake: got line: typed at a prompt" in out, "typed at the prompt: %r" % out)
    rc, out, err = nmikit_qemu("--cmdline", "echo", "--timeout", "1.5")
    equal(rc, 124, "no input: the echo waits until the timeout")


@test
def e2e_record_then_replay_is_byte_identical():
    rr = os.path.join(FAKE.get("dir") or os.path.dirname(fake_kernel()), "run.rr")
    common = ["--cmdline", "count=4 nmi=3 spin", "--timeout", "60"]
    rc, recorded, err = nmikit_qemu(*common, "--record", rr,
                                    "--inject", "once:waiting for:inject-nmi",
                                    "--inject", "after:got NMI 1:every:0.05-0.2:inject-nmi")
    equal(rc, 0, "recorded run (stderr %s)" % err.strip())
    check(os.path.getsize(rr + ".inject") > 0, "injections were logged")
    rc, replayed, err = nmikit_qemu(*common, "--replay", rr)
    equal(rc, 0, "replayed run (stderr %s)" % err.strip())
    check(recorded.count(b"tsc 0x") == 4, "TSC lines printed")
    equal(replayed, recorded, "replayed console")


@test
def e2e_run_scenarios_tap_and_logs():
    kernel = fake_kernel()
    work = tempfile.mkdtemp(prefix="nmikit-scn-", dir=FAKE["dir"])
    conf = os.path.join(work, "s.conf")
    with open(conf, "w") as fh:
        fh.write(textwrap.dedent("""\
            selftest.good cmdline='ktap=good' ktap expect='fake_case_two' purpose='passes'
            selftest.bad  cmdline='ktap=bad exit=1' ktap purpose='a KTAP failure'
            selftest.hang cmdline=hang exit=0 timeout=1.5 icount purpose='a hang'
            selftest.nmi  cpus=2 cmdline='nmi=1' exit=0 qmp='on:waiting:inject-nmi' \\
                purpose='QMP injection on a console line'
            selftest.rec  cmdline='count=2' exit=0 record purpose='recorded on request'
            other.skipped cmdline=x ktap purpose='filtered out'
            """))
    proc = subprocess.run([os.path.join(TOOLS, "run-scenarios"), "--conf", conf, "--kernel",
                           kernel, "--filter", "selftest.*", "--out", work, "--jobs", "2"],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=300)
    out = proc.stdout
    equal(proc.returncode, 1, "exit status with failures:\n" + out)
    lines = out.splitlines()
    equal(lines[0], "1..5", "plan")
    equal(lines[-1], "3 passed, 2 failed", "summary")
    results = sorted(l.split(" - ")[1] + ":" + l.split(" ")[0] for l in lines
                     if re.match(r"(not )?ok \d+ - ", l))
    equal(results, ["selftest.bad:not", "selftest.good:ok", "selftest.hang:not",
                    "selftest.nmi:ok", "selftest.rec:ok"], "results")
    check(os.path.getsize(os.path.join(work, "selftest.rec.rr")) > 0,
          "a 'record' scenario keeps its recording")
    check("#       not ok 2 - fake_case_two" in lines, "nested KTAP shown as a diagnostic")
    check(any("FAILED: KTAP: failed: not ok 2 - fake_case_two" in l for l in lines), out)
    check(any("FAILED: TIMEOUT after 1.5 s (expected exit=0)" in l for l in lines), out)
    check(any("replay it with: tools/nmikit-qemu --replay" in l for l in lines),
          "replay command printed for the failed icount scenario:\n" + out)
    check(os.path.exists(os.path.join(work, "selftest.hang.rr")), "recording kept")
    with open(os.path.join(work, "selftest.bad.log"), "rb") as fh:
        log = fh.read()
    check(b"not ok 2 fake_case_two" in log and b"reason: KTAP" in log, "full console logged")
    check(not os.path.exists(os.path.join(work, "selftest.good.log")), "no log for a pass")
    listing = subprocess.run([os.path.join(TOOLS, "run-scenarios"), "--conf", conf, "--list"],
                             stdout=subprocess.PIPE, text=True).stdout
    check("selftest.nmi" in listing and "QMP injection on a console line" in listing, listing)


@test
def test_all_counts_top_level_results():
    work = tempfile.mkdtemp(prefix="nmikit-testall-")
    try:
        with open(os.path.join(work, "Makefile"), "w") as fh:
            fh.write(textwrap.dedent("""\
                good:
                \t@echo "1..2"; echo "ok 1 - a"; echo "ok 2 - b"; echo "    not ok 1 - nested"
                mixed:
                \t@echo "ok 1 - c"; echo "not ok 2 - d"; echo "#   not ok 3 - diag"; exit 1
                broken:
                \t@echo "ok 1 - e"; exit 2
                empty:
                \t@true
                """).replace("\\t", "\t"))

        def run(*suites):
            proc = subprocess.run([os.path.join(TOOLS, "test-all")] + list(suites), cwd=work,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            return proc.returncode, proc.stdout.splitlines()

        rc, lines = run("good", "mixed", "broken")
        equal(lines[-1], "4 passed, 2 failed", "totals")
        equal(rc, 1, "failure status")
        check(any(l.startswith("not ok - broken") for l in lines), "broken suite named")
        rc, lines = run("good")
        equal((rc, lines[-1]), (0, "2 passed, 0 failed"), "all good")
        rc, lines = run("empty")
        equal((rc, lines[-1]), (1, "0 passed, 0 failed"), "no test ran is a failure")
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------
def main(argv):
    unit_only = "--unit" in argv
    names = [a for a in argv if not a.startswith("--")]
    chosen = [t for t in TESTS if not names or any(n in t.__name__ for n in names)]
    print("1..%d" % len(chosen))
    failed = 0
    for num, fn in enumerate(chosen, 1):
        name = fn.__name__
        if unit_only and name.startswith("e2e_"):
            print("ok %d - %s # SKIP --unit" % (num, name))
            continue
        try:
            fn()
        except Skip as exc:
            print("ok %d - %s # SKIP %s" % (num, name, exc))
        except Exception:   # noqa: BLE001 - any error fails this test only
            failed += 1
            print("not ok %d - %s" % (num, name))
            for line in traceback.format_exc().rstrip().splitlines():
                print("# " + line)
        else:
            print("ok %d - %s" % (num, name))
        sys.stdout.flush()
    if "dir" in FAKE:
        shutil.rmtree(FAKE["dir"], ignore_errors=True)
    print("%d passed, %d failed" % (len(chosen) - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
