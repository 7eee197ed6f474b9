"""Boot the nmikit kernel (or its GRUB ISO) in QEMU and report the outcome.

build_command() turns a Config into a qemu-system-x86_64 command line;
run_qemu() runs it: it streams the serial console as it arrives, fires
injections (see actions.py), enforces a timeout, and maps QEMU's exit
status back to the kernel's:

    the kernel writes V to isa-debug-exit (port 0xf4), QEMU exits (V<<1)|1

    status  meaning
    0       V=0: all tests passed / poweroff, or QEMU shut down normally
    1       V=1: a test failed
    2       V=2: kernel panic
    V       any other value the kernel wrote (0..122)
    123     the guest reset (a triple fault, or a reboot under -no-reboot)
    124     timeout: QEMU was killed after the time limit
    125     QEMU failed to start, or died on a signal or an error of its own

QEMU is started paused (-S) with a private QMP socket; the harness connects,
then resumes the guest. That socket reports *why* QEMU stopped (a triple
fault under -no-reboot looks like a clean exit 0 otherwise), and it is the
channel for the scenario's injections.
"""

import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from . import actions as actmod
from . import qmp as qmpmod

QEMU_BINARY = "qemu-system-x86_64"
ICOUNT_RTC = "base=2024-01-01T00:00:00,clock=vm"
DEFAULT_KERNEL = "build/nmikit.elf"
# The repository root (tools/harness/ is two levels down): the default
# kernel is looked up there when the working directory has none.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

STATUS_RESET = 123
STATUS_TIMEOUT = 124
STATUS_QEMU_FAILED = 125

STATUS_NAMES = {
    0: "pass / poweroff",
    1: "tests failed",
    2: "kernel panic",
    STATUS_RESET: "guest reset (triple fault?)",
    STATUS_TIMEOUT: "timeout",
    STATUS_QEMU_FAILED: "QEMU failed",
}


def status_name(status):
    return STATUS_NAMES.get(status, "kernel exit value %d" % status)


class ConfigError(ValueError):
    """Options that cannot make a QEMU command line."""


class Config:
    """What to boot and how. Every field has a usable default."""

    def __init__(self, kernel=None, iso=None, smp=1, machine="pc", cmdline="",
                 icount=False, qmp=None, qemu_args=(), gdb=False, record=None,
                 replay=None, memory="256M", qemu=QEMU_BINARY):
        self.kernel = kernel
        self.iso = iso
        self.smp = smp
        self.machine = machine
        self.cmdline = cmdline
        self.icount = icount
        self.qmp = qmp
        self.qemu_args = list(qemu_args)
        self.gdb = gdb
        self.record = record
        self.replay = replay
        self.memory = memory
        self.qemu = qemu

    def boot_image(self):
        if self.iso:
            return self.iso
        if self.kernel:
            return self.kernel
        if os.path.isfile(DEFAULT_KERNEL):
            return DEFAULT_KERNEL
        return os.path.relpath(os.path.join(ROOT, DEFAULT_KERNEL))


def split_qemu_args(args):
    """Each --qemu-arg may hold several words ("-global hpet.msi=on")."""
    out = []
    for arg in args:
        try:
            out.extend(shlex.split(arg))
        except ValueError as exc:
            raise ConfigError("cannot split QEMU argument %r: %s" % (arg, exc)) from None
    return out


def build_command(cfg, interactive=False, control_socket=None):
    """The qemu-system-x86_64 argv for `cfg`.

    interactive: the serial console is multiplexed on the terminal with
    Ctrl-C going to the guest (Ctrl-A X quits QEMU, Ctrl-A H lists keys).
    control_socket: path of the harness's private QMP socket; QEMU then
    starts paused and waits for the harness to resume it."""
    if cfg.machine not in ("pc", "q35"):
        raise ConfigError("--machine must be pc or q35, not %r" % cfg.machine)
    if not isinstance(cfg.smp, int) or not 1 <= cfg.smp <= 255:
        raise ConfigError("--smp must be 1..255 (xAPIC), not %r" % (cfg.smp,))
    if cfg.record and cfg.replay:
        raise ConfigError("--record and --replay exclude each other")
    if cfg.iso and cfg.kernel:
        raise ConfigError("give --kernel or --iso, not both")
    if cfg.iso and cfg.cmdline:
        raise ConfigError("--cmdline needs --kernel: an ISO boots with the command line "
                          "in its grub.cfg")
    if cfg.iso and (cfg.record or cfg.replay):
        raise ConfigError("record/replay needs --kernel: QEMU can only replay a CD-ROM "
                          "through a blkreplay drive, which this harness does not set up")
    if (cfg.record or cfg.replay) and cfg.smp > 1:
        raise ConfigError("QEMU 7.2 cannot record/replay more than one CPU (it refuses "
                          "with 'Record/replay feature is not supported for smp'); an "
                          "--icount run without injections repeats exactly by itself")
    image = cfg.boot_image()
    if not os.path.isfile(image):
        raise ConfigError("no such %s: %s%s" % (
            "ISO" if cfg.iso else "kernel", image,
            "" if cfg.iso or cfg.kernel else " (run make first)"))

    cmd = [cfg.qemu, "-accel", "tcg", "-machine", cfg.machine, "-smp", str(cfg.smp),
           "-m", cfg.memory, "-display", "none", "-no-reboot", "-monitor", "none",
           "-nic", "none"]
    if interactive:
        cmd += ["-chardev", "stdio,id=console,mux=on,signal=off",
                "-serial", "chardev:console"]
    else:
        cmd += ["-serial", "stdio"]
    cmd += ["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]
    if cfg.iso:
        cmd += ["-cdrom", image, "-boot", "d"]
    else:
        cmd += ["-kernel", image]
        if cfg.cmdline:
            cmd += ["-append", cfg.cmdline]
    if cfg.icount or cfg.record or cfg.replay:
        # QEMU 7.2 hangs recording with sleep=off (measured): a recorded
        # run keeps the default sleep=on, whose idle-time clock jumps are
        # written to the log like every other outside event.
        if cfg.record:
            icount = "shift=0,rr=record,rrfile=" + cfg.record
        elif cfg.replay:
            icount = "shift=0,rr=replay,rrfile=" + cfg.replay
        else:
            icount = "shift=0,sleep=off"
        cmd += ["-icount", icount, "-rtc", ICOUNT_RTC]
    if cfg.qmp:
        cmd += ["-qmp", "unix:%s,server=on,wait=off" % cfg.qmp]
    if control_socket:
        cmd += ["-qmp", "unix:%s,server=on,wait=off" % control_socket, "-S"]
    if cfg.gdb:
        cmd += ["-s"]
        if not control_socket:
            cmd += ["-S"]
    cmd += split_qemu_args(cfg.qemu_args)
    return cmd


class Result:
    """The outcome of one QEMU run."""

    def __init__(self):
        self.status = None          # mapped status, see the module doc
        self.returncode = None      # QEMU's own exit status (negative: signal)
        self.timed_out = False
        self.timeout = None
        self.console_bytes = b""
        self.stderr = ""
        self.shutdown_reason = None  # from QMP's SHUTDOWN event, if any
        self.started = False         # the guest was resumed (QEMU came up)
        self.duration = 0.0
        self.command = []
        self.actions_log = []
        self.seed = None
        self.error = None            # harness-side problem (QMP, spawn)

    @property
    def console(self):
        return self.console_bytes.decode("utf-8", errors="replace")

    def describe(self):
        """One line: status and why."""
        if self.timed_out:
            return "TIMEOUT after %s s" % _fmt_seconds(self.timeout)
        text = "exit %d (%s)" % (self.status, status_name(self.status))
        if self.status == STATUS_QEMU_FAILED:
            detail = self.error or first_error_line(self.stderr) or (
                "QEMU exit status %s" % self.returncode)
            text += ": " + detail
        elif self.shutdown_reason and self.status in (0, STATUS_RESET):
            text += ", QEMU shutdown reason %s" % self.shutdown_reason
        return text


def _fmt_seconds(sec):
    return ("%g" % sec) if sec is not None else "?"


def first_error_line(stderr):
    """QEMU's first real error message (not a warning) in its stderr."""
    for line in stderr.splitlines():
        if "warning:" in line:
            continue
        if line.strip():
            return line.strip()
    return None


def map_status(returncode, timed_out=False, shutdown_reason=None, stderr="", started=True):
    """Map QEMU's exit status to the harness status (module doc).

    isa-debug-exit turns a kernel value of 0 into QEMU status 1, which is
    also what QEMU exits with on an error of its own. The two are told apart
    by whether the guest ever started and by an error message on stderr."""
    if timed_out:
        return STATUS_TIMEOUT
    if shutdown_reason == "guest-reset":
        return STATUS_RESET
    if returncode is None or returncode < 0:
        return STATUS_QEMU_FAILED
    if returncode == 0:
        return 0
    if returncode & 1 == 0:
        return STATUS_QEMU_FAILED
    if returncode == 1 and (not started or first_error_line(stderr)):
        return STATUS_QEMU_FAILED
    return returncode >> 1


class _Console:
    """Collects console bytes, echoes them live, splits them into lines
    for the triggers. Partial lines are kept until their newline."""

    def __init__(self, echo, on_line):
        self.echo = echo
        self.on_line = on_line
        self.data = bytearray()
        self._partial = b""
        self.ends_with_newline = True

    def feed(self, chunk):
        self.data += chunk
        if self.echo is not None:
            self.echo.write(chunk)
            self.echo.flush()
        self.ends_with_newline = chunk.endswith(b"\n")
        if self.on_line is None:
            return
        buf = self._partial + chunk
        lines = buf.split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            self.on_line(_text(line), True)
        if self._partial:
            self.on_line(_text(self._partial), False)

    def finish(self):
        if self._partial and self.on_line is not None:
            self.on_line(_text(self._partial), True)
        self._partial = b""


def _text(line):
    return line.rstrip(b"\r").decode("utf-8", errors="replace")


def _pump(fd, sink):
    """Copy everything readable from fd to sink(bytes) until EOF."""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return
        if not chunk:
            return
        sink(chunk)


def run_qemu(cfg, timeout=None, echo=None, stderr_echo=None, stdin="null",
             interactive=False, inject=(), send=(), seed=None, notice=None):
    """Boot `cfg` and wait for QEMU to end. Returns a Result.

    timeout: seconds (None: no limit). echo: a binary stream that receives
    the console live (e.g. sys.stdout.buffer). stderr_echo: a text stream
    that receives QEMU's stderr live. stdin: "null", "inherit" (QEMU reads
    our stdin) or "pipe" (needed for send actions; chosen automatically).
    inject/send: specs for actions.parse('qmp'/'send', spec), or Action
    objects. notice(text): called for harness messages such as TIMEOUT."""
    acts = [a if isinstance(a, actmod.Action) else actmod.parse("qmp", a) for a in inject]
    acts += [a if isinstance(a, actmod.Action) else actmod.parse("send", a) for a in send]
    if any(a.kind == "send" for a in acts):
        stdin = "pipe"

    res = Result()
    res.timeout = timeout
    tmpdir = tempfile.mkdtemp(prefix="nmikit-qemu-")
    control = os.path.join(tmpdir, "control.qmp")
    try:
        cmd = build_command(cfg, interactive=interactive, control_socket=control)
        res.command = cmd
        if shutil.which(cfg.qemu) is None and not os.path.isfile(cfg.qemu):
            res.status = STATUS_QEMU_FAILED
            res.error = "%s not found (tools/ensure-deps qemu-system-x86)" % cfg.qemu
            return res
        stdin_arg = {"null": subprocess.DEVNULL, "inherit": None,
                     "pipe": subprocess.PIPE}[stdin]
        start = time.monotonic()
        try:
            proc = subprocess.Popen(cmd, stdin=stdin_arg, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
        except OSError as exc:
            res.status = STATUS_QEMU_FAILED
            res.error = "cannot run %s: %s" % (cfg.qemu, exc)
            return res

        client = qmpmod.QMPClient(control)
        shutdown = {}

        def on_event(ev):
            if ev.get("event") == "SHUTDOWN" and "reason" not in shutdown:
                shutdown["reason"] = ev.get("data", {}).get("reason")
        client.on_event = on_event

        input_lock = threading.Lock()

        def write_input(data):
            with input_lock:
                proc.stdin.write(data)
                proc.stdin.flush()

        record_log = replayer = None
        if cfg.record:
            record_log = actmod.injection_log_path(cfg.record)
            if os.path.exists(record_log):
                os.unlink(record_log)
        if cfg.replay:
            # Injections come from the recording, not from triggers.
            acts = [a for a in acts if a.kind != "qmp"]
            log = actmod.injection_log_path(cfg.replay)
            if os.path.exists(log):
                replayer = actmod.Replayer(client, actmod.load_injection_log(log))
                chained = client.on_event

                def on_event_replay(ev):
                    chained(ev)
                    replayer.on_event(ev)
                client.on_event = on_event_replay
        runner = actmod.Runner(acts, client=client,
                               write_input=write_input if stdin == "pipe" else None,
                               seed=seed, record_log=record_log)
        res.seed = runner.seed
        console = _Console(echo, runner.on_line if acts else None)
        stderr_chunks = []

        def on_stderr(chunk):
            stderr_chunks.append(chunk)
            if stderr_echo is not None:
                stderr_echo.write(chunk.decode("utf-8", errors="replace"))
                stderr_echo.flush()

        out_thread = threading.Thread(target=_pump, args=(proc.stdout.fileno(), console.feed),
                                      name="console", daemon=True)
        err_thread = threading.Thread(target=_pump, args=(proc.stderr.fileno(), on_stderr),
                                      name="qemu-stderr", daemon=True)
        out_thread.start()
        err_thread.start()

        try:
            client.connect(timeout=15.0, alive=lambda: proc.poll() is None)
            if replayer is not None:
                replayer.arm()
            if not cfg.gdb:
                client.execute("cont")
            res.started = True
            runner.start()
            if replayer is not None:
                replayer.start()
        except qmpmod.QMPError as exc:
            if proc.poll() is None:
                res.error = "harness could not take control of QEMU: %s" % exc
                _terminate(proc)

        deadline = None if timeout is None else start + timeout
        try:
            while True:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    proc.wait(timeout=left)
                    break
                except subprocess.TimeoutExpired:
                    res.timed_out = True
                    _terminate(proc)
                    break
        except KeyboardInterrupt:
            _terminate(proc)
            raise
        finally:
            runner.stop()
            if replayer is not None:
                replayer.stop()
            out_thread.join(timeout=10)
            err_thread.join(timeout=10)
            console.finish()
            client.close()
            if proc.stdin is not None:
                try:
                    proc.stdin.close()
                except OSError:
                    pass

        res.duration = time.monotonic() - start
        res.returncode = proc.returncode
        res.console_bytes = bytes(console.data)
        res.stderr = b"".join(stderr_chunks).decode("utf-8", errors="replace")
        res.shutdown_reason = shutdown.get("reason")
        res.actions_log = runner.log + (replayer.log if replayer is not None else [])
        if res.error:
            res.status = STATUS_QEMU_FAILED
        else:
            res.status = map_status(res.returncode, res.timed_out, res.shutdown_reason,
                                    res.stderr, res.started)
        if notice is not None and (res.timed_out or res.status == STATUS_RESET):
            prefix = "" if console.ends_with_newline else "\n"
            notice(prefix + res.describe())
        return res
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _terminate(proc):
    """Stop QEMU: SIGTERM first, so that QEMU shuts down cleanly and a
    record/replay log is flushed, then SIGKILL if it does not go."""
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    except ProcessLookupError:
        pass


def shell_command(argv):
    """argv as one line a person can paste into a shell."""
    return " ".join(shlex.quote(a) for a in argv)


def stdout_binary():
    return getattr(sys.stdout, "buffer", sys.stdout)
