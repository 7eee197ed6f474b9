"""A small client for QEMU's machine protocol (QMP) over a unix socket.

QMP is line-delimited JSON: QEMU greets with {"QMP": ...}, the client
answers {"execute": "qmp_capabilities"}, and from then on each command gets
one {"return": ...} or {"error": ...} reply, while asynchronous
{"event": ...} messages (SHUTDOWN, STOP, RESET...) may arrive at any time.

A reader thread splits replies from events, so a command may be sent from
any thread while events are being collected. Commands are serialised: one
is in flight at a time.
"""

import json
import os
import queue
import socket
import threading
import time


class QMPError(Exception):
    """A QMP command failed, or the connection did."""


class QMPClient:
    def __init__(self, path):
        self.path = path
        self.sock = None
        self.greeting = None
        self.events = []
        self._replies = queue.Queue()
        self._cmd_lock = threading.Lock()
        self._event_cond = threading.Condition()
        self._reader = None
        self._closed = False
        self.on_event = None     # optional callback(event_dict), reader thread

    # -- connection -------------------------------------------------------
    def connect(self, timeout=10.0, alive=None):
        """Connect to the socket (waiting up to `timeout` seconds for QEMU
        to create it; `alive()` returning False aborts the wait), read the
        greeting and leave capabilities negotiation mode."""
        deadline = time.monotonic() + timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                if alive is not None and not alive():
                    raise QMPError("QEMU exited before its QMP socket %s came up" % self.path)
                if time.monotonic() > deadline:
                    raise QMPError("no QMP socket at %s after %.0f s" % (self.path, timeout))
                time.sleep(0.02)
        self.sock = sock
        self._file = sock.makefile("rb")
        line = self._file.readline()
        if not line:
            raise QMPError("QMP socket closed before the greeting")
        self.greeting = json.loads(line)
        if "QMP" not in self.greeting:
            raise QMPError("unexpected QMP greeting: %r" % line)
        self._reader = threading.Thread(target=self._read_loop, name="qmp-reader", daemon=True)
        self._reader.start()
        self.execute("qmp_capabilities")
        return self

    def close(self):
        self._closed = True
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()

    def _read_loop(self):
        try:
            for raw in self._file:
                try:
                    msg = json.loads(raw)
                except ValueError:
                    continue
                if "event" in msg:
                    with self._event_cond:
                        self.events.append(msg)
                        self._event_cond.notify_all()
                    if self.on_event is not None:
                        self.on_event(msg)
                else:
                    self._replies.put(msg)
        except (OSError, ValueError):
            pass
        finally:
            self._replies.put(None)
            with self._event_cond:
                self._event_cond.notify_all()

    # -- commands ---------------------------------------------------------
    def execute(self, command, arguments=None, timeout=30.0):
        """Run one QMP command and return its "return" value.
        Raises QMPError on an error reply or a lost connection."""
        msg = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        return self.execute_raw(msg, timeout)

    def execute_raw(self, msg, timeout=30.0):
        """Send a whole command object (dict) and return its "return" value."""
        if self.sock is None:
            raise QMPError("not connected")
        data = (json.dumps(msg) + "\n").encode()
        with self._cmd_lock:
            try:
                self.sock.sendall(data)
            except OSError as exc:
                raise QMPError("QMP send failed: %s" % exc) from exc
            try:
                reply = self._replies.get(timeout=timeout)
            except queue.Empty:
                raise QMPError("no reply to %s within %.0f s" % (msg.get("execute"), timeout))
        if reply is None:
            self._replies.put(None)     # keep reporting the closed connection
            raise QMPError("QMP connection closed (QEMU exited?)")
        if "error" in reply:
            err = reply["error"]
            raise QMPError("%s: %s" % (err.get("class", "Error"), err.get("desc", err)))
        return reply.get("return")

    def hmp(self, command_line):
        """Run a human monitor command (e.g. "mce 0 1 0xb200000000000000 0 0 0",
        "nmi", "info registers") and return its text output. HMP reports
        most errors as text, so output that looks like an error raises."""
        out = self.execute("human-monitor-command", {"command-line": command_line})
        text = out or ""
        lowered = text.lower()
        if lowered.startswith("unknown command") or "error" in lowered.split("\n", 1)[0]:
            raise QMPError("HMP '%s': %s" % (command_line, text.strip()))
        return text

    def inject_nmi(self):
        """Deliver an NMI to every vCPU (QEMU's "NMI button")."""
        return self.execute("inject-nmi")

    def wait_event(self, name, timeout):
        """Wait for an event called `name`; return it, or None on timeout."""
        deadline = time.monotonic() + timeout
        with self._event_cond:
            seen = 0
            while True:
                for ev in self.events[seen:]:
                    if ev.get("event") == name:
                        return ev
                seen = len(self.events)
                left = deadline - time.monotonic()
                if left <= 0 or (self._reader is not None and not self._reader.is_alive()):
                    return None
                self._event_cond.wait(left)


def connect(path, timeout=10.0):
    """Connect to an existing QMP socket (e.g. one made with --qmp PATH)."""
    if not os.path.exists(path):
        raise QMPError("no such socket: %s" % path)
    return QMPClient(path).connect(timeout)
