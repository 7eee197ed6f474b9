"""Injections into a running QEMU: QMP commands and serial input, fired by
console lines or by the clock.

Spec syntax (the value of a scenario's qmp= / send= field, or of
nmikit-qemu's --inject / --send):

    TRIGGER:PAYLOAD

TRIGGER is one of
    on:REGEX            every console line matching REGEX fires it
    once:REGEX          only the first matching line fires it
    at:T                once, T seconds after the guest started
    every:T             every T seconds
    every:T1-T2         repeatedly, waiting a random time in [T1, T2]
    after:REGEX:at:T / after:REGEX:every:...
                        the clock of at/every starts at the first console
                        line matching REGEX instead of at guest start

REGEX is a Python regular expression searched in each console line; it may
not hold a literal colon (write \\x3a). Times are wall-clock seconds.

A QMP PAYLOAD is a command name (inject-nmi, stop, cont, quit...),
hmp:COMMAND LINE (a human monitor command, e.g.
"hmp:mce 0 1 0xb200000000000000 0 0 0"), or json:{...} (a whole QMP
command object). A send PAYLOAD is text typed on the serial console, with
Python escapes (\\n, \\r, \\t, \\xNN).
"""

import codecs
import json
import queue
import random
import re
import threading
import time

from . import qmp as qmpmod


# Outcome of an action that came too late: QEMU had already exited.
LATE = "not delivered: QEMU had exited"


class SpecError(ValueError):
    """A malformed injection spec."""


def _number(text, what):
    try:
        val = float(text)
    except ValueError:
        raise SpecError("%s: '%s' is not a number of seconds" % (what, text)) from None
    if val < 0 or val != val:
        raise SpecError("%s: '%s' must be >= 0" % (what, text))
    return val


def _regex(text, what):
    if not text:
        raise SpecError("%s: empty regular expression" % what)
    try:
        return re.compile(text)
    except re.error as exc:
        raise SpecError("%s: bad regular expression '%s': %s" % (what, text, exc)) from None


class Action:
    """One parsed spec. kind is 'qmp' or 'send'."""

    def __init__(self, kind, spec):
        self.kind = kind
        self.spec = spec
        self.trigger = None        # 'on', 'once', 'at', 'every'
        self.regex = None          # for on/once
        self.after = None          # regex starting the clock of at/every
        self.t1 = self.t2 = None   # seconds
        self.payload = None        # qmp: dict or ('hmp', text); send: bytes
        self._parse()

    def _parse(self):
        what = "%s=%s" % (self.kind, self.spec)
        rest = self.spec
        head, sep, rest = rest.partition(":")
        if head == "after":
            if not sep:
                raise SpecError("%s: 'after' needs ':REGEX:at:T' or ':REGEX:every:T'" % what)
            rx, sep, rest = rest.partition(":")
            self.after = _regex(rx, what)
            head, sep, rest = rest.partition(":")
            if head not in ("at", "every"):
                raise SpecError("%s: after:REGEX must be followed by at: or every:" % what)
        if not sep:
            raise SpecError("%s: expected TRIGGER:PAYLOAD (on:, once:, at:, every:, after:)" % what)
        if head in ("on", "once"):
            rx, sep, rest = rest.partition(":")
            if not sep:
                raise SpecError("%s: expected %s:REGEX:PAYLOAD (a colon in the REGEX "
                                "must be written \\x3a)" % (what, head))
            self.regex = _regex(rx, what)
        elif head == "at":
            t, sep, rest = rest.partition(":")
            self.t1 = _number(t, what)
        elif head == "every":
            t, sep, rest = rest.partition(":")
            lo, dash, hi = t.partition("-")
            self.t1 = _number(lo, what)
            self.t2 = _number(hi, what) if dash else self.t1
            if self.t2 < self.t1:
                raise SpecError("%s: interval %s has its maximum below its minimum" % (what, t))
            if self.t2 <= 0:
                raise SpecError("%s: an 'every' interval must be above 0" % what)
        else:
            raise SpecError("%s: unknown trigger '%s' (use on:, once:, at:, every:, after:)"
                            % (what, head))
        if not sep:
            raise SpecError("%s: missing ':PAYLOAD' after the trigger" % what)
        self.trigger = head
        if not rest:
            raise SpecError("%s: empty payload" % what)
        if self.kind == "send":
            try:
                self.payload = codecs.decode(rest, "unicode_escape").encode("latin-1")
            except (UnicodeDecodeError, UnicodeEncodeError) as exc:
                raise SpecError("%s: bad escape in text: %s" % (what, exc)) from None
        elif rest.startswith("hmp:"):
            if not rest[4:].strip():
                raise SpecError("%s: hmp: needs a monitor command" % what)
            self.payload = ("hmp", rest[4:])
        elif rest.startswith("json:"):
            try:
                obj = json.loads(rest[5:])
            except ValueError as exc:
                raise SpecError("%s: json: payload is not valid JSON: %s" % (what, exc)) from None
            if not isinstance(obj, dict) or "execute" not in obj:
                raise SpecError("%s: json: payload must be an object with \"execute\"" % what)
            self.payload = obj
        elif re.fullmatch(r"[a-z][a-z0-9_-]*", rest):
            self.payload = {"execute": rest}
        else:
            raise SpecError("%s: unknown QMP payload '%s' (a command name such as inject-nmi, "
                            "hmp:TEXT or json:{...})" % (what, rest))

    def describe(self):
        if self.kind == "send":
            return "send %r" % self.payload.decode("latin-1")
        if isinstance(self.payload, tuple):
            return "hmp '%s'" % self.payload[1]
        if list(self.payload) == ["execute"]:
            return self.payload["execute"]
        return json.dumps(self.payload)


def parse(kind, spec):
    """Parse one spec of kind 'qmp' or 'send'; raises SpecError."""
    return Action(kind, spec)


class Runner:
    """Fires a list of Actions against one QEMU.

    on_line() is called by the console reader for each complete line; the
    clock triggers run in their own threads; the actions themselves run in
    one worker thread so that a slow QMP reply never holds up the console
    reader (QEMU blocked on a full console pipe could not answer QMP)."""

    def __init__(self, actions, client=None, write_input=None, seed=None, record_log=None):
        self.actions = list(actions)
        self.record_log = record_log
        self.client = client
        self.write_input = write_input
        self.seed = seed if seed is not None else random.randrange(1 << 32)
        self.log = []             # (seconds since start, description, outcome)
        self._t0 = None
        self._queue = queue.Queue()
        self._stop = threading.Event()
        self._fired_once = set()
        self._fired_this_line = set()
        self._clock_started = set()
        self._threads = []
        self._lock = threading.Lock()

    def start(self):
        self._t0 = time.monotonic()
        worker = threading.Thread(target=self._work, name="inject-worker", daemon=True)
        worker.start()
        self._threads.append(worker)
        for idx, act in enumerate(self.actions):
            if act.trigger in ("at", "every") and act.after is None:
                self._start_clock(idx)

    def _start_clock(self, idx):
        with self._lock:
            if idx in self._clock_started:
                return
            self._clock_started.add(idx)
        rng = random.Random(self.seed + idx)
        thr = threading.Thread(target=self._clock, args=(self.actions[idx], rng),
                               name="inject-clock", daemon=True)
        thr.start()
        self._threads.append(thr)

    def _clock(self, act, rng):
        if act.trigger == "at":
            if not self._stop.wait(act.t1):
                self._queue.put(act)
            return
        while True:
            delay = act.t1 if act.t1 == act.t2 else rng.uniform(act.t1, act.t2)
            if self._stop.wait(delay):
                return
            self._queue.put(act)

    def on_line(self, line, complete=True):
        """Match the triggers against a console line. The console reader
        also offers the unfinished last line (complete=False), so that a
        prompt without a newline can fire a trigger; a trigger fires at
        most once per line either way."""
        for idx, act in enumerate(self.actions):
            if idx in self._fired_this_line:
                continue
            if act.after is not None and idx not in self._clock_started:
                if act.after.search(line):
                    self._start_clock(idx)
                continue
            if act.trigger in ("on", "once") and act.regex.search(line):
                if act.trigger == "once":
                    if idx in self._fired_once:
                        continue
                    self._fired_once.add(idx)
                self._fired_this_line.add(idx)
                self._queue.put(act)
        if complete:
            self._fired_this_line.clear()

    def _work(self):
        while True:
            act = self._queue.get()
            if act is None:
                return
            elapsed = time.monotonic() - self._t0
            try:
                outcome = self._fire(act)
            except (qmpmod.QMPError, OSError) as exc:
                if self._stop.is_set() or _connection_lost(exc):
                    outcome = LATE
                else:
                    outcome = "FAILED: %s" % exc
            self.log.append((elapsed, act.describe(), outcome))

    def _fire(self, act):
        if act.kind == "send":
            if self.write_input is None:
                raise OSError("no serial input channel")
            self.write_input(act.payload)
            return "ok"
        if self.client is None:
            raise qmpmod.QMPError("no QMP connection")
        if self.record_log is None:
            return _send_qmp(self.client, act.payload)
        # Recording: QEMU's log does not hold QMP commands, only the
        # instruction count at which their effect (an interrupt, say) was
        # taken. Pin each injection to an exact instruction count instead:
        # stop the guest, read the count, inject, resume; the replay
        # stops at that same count and injects again (Replayer).
        self.client.execute("stop")
        try:
            icount = self.client.execute("query-replay")["icount"]
            outcome = _send_qmp(self.client, act.payload)
            entry = {"icount": icount}
            if isinstance(act.payload, tuple):
                entry["hmp"] = act.payload[1]
            else:
                entry["qmp"] = act.payload
            with open(self.record_log, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry) + "\n")
        finally:
            self.client.execute("cont")
        return outcome

    def stop(self):
        self._stop.set()
        self._queue.put(None)
        for thr in self._threads:
            thr.join(timeout=5)


def _connection_lost(exc):
    """True when `exc` only says that QEMU had gone away."""
    text = str(exc)
    return isinstance(exc, (BrokenPipeError, ConnectionResetError)) or \
        "connection closed" in text or "Broken pipe" in text or "Connection reset" in text


def _send_qmp(client, payload):
    if isinstance(payload, tuple):
        out = client.hmp(payload[1]).strip()
        return out or "ok"
    ret = client.execute_raw(payload)
    return "ok" if not ret else json.dumps(ret)


def injection_log_path(rrfile):
    """Where a recording's QMP injections are kept, beside the recording."""
    return rrfile + ".inject"


def load_injection_log(path):
    """[(icount, payload)] from a recording's injection log."""
    entries = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                icount = int(obj["icount"])
                payload = ("hmp", obj["hmp"]) if "hmp" in obj else obj["qmp"]
            except (ValueError, KeyError, TypeError) as exc:
                raise SpecError("%s:%d: bad injection record: %s" % (path, lineno, exc)) from None
            entries.append((icount, payload))
    return entries


class Replayer:
    """Repeats a recording's QMP injections at the instruction counts where
    they were made: replay-break at the count, wait for the guest to stop,
    inject, arm the next break, resume. arm() must run before the guest is
    first resumed so that an injection early in the run is not missed."""

    def __init__(self, client, entries):
        self.client = client
        self.entries = list(entries)
        self.log = []
        self._stopped = threading.Event()
        self._quit = threading.Event()
        self._thread = None

    def on_event(self, ev):
        if ev.get("event") == "STOP":
            self._stopped.set()

    def arm(self):
        if self.entries:
            self.client.execute("replay-break", {"icount": self.entries[0][0]})

    def start(self):
        if self.entries:
            self._thread = threading.Thread(target=self._run, name="replay-inject",
                                            daemon=True)
            self._thread.start()

    def _run(self):
        try:
            for idx, (icount, payload) in enumerate(self.entries):
                while not self._stopped.wait(0.1):
                    if self._quit.is_set():
                        return
                self._stopped.clear()
                now = self.client.execute("query-replay")["icount"]
                outcome = _send_qmp(self.client, payload)
                if now != icount:
                    outcome += " (guest stopped at %d, not %d)" % (now, icount)
                what = ("hmp '%s'" % payload[1]) if isinstance(payload, tuple) \
                    else payload.get("execute")
                self.log.append((float(icount), "%s at icount %d" % (what, icount), outcome))
                if idx + 1 < len(self.entries):
                    self.client.execute("replay-break", {"icount": self.entries[idx + 1][0]})
                self.client.execute("cont")
        except qmpmod.QMPError as exc:
            self.log.append((0.0, "replayed injections", LATE if _connection_lost(exc)
                             else "FAILED: %s" % exc))

    def stop(self):
        self._quit.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
