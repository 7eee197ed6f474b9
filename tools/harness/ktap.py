"""KTAP v1 parsing of a kernel console log.

The in-kernel tests print KTAP v1 on the serial console, mixed with whatever
else the kernel logs at the same time. This module finds the KTAP documents
in such a log, rebuilds their tree of (sub)tests from the indentation, and
judges them: every plan must match its number of results, results must be
numbered 1..N in order, nothing may fail, and nothing may stop half way.

A line prefix put in front of every console line (a timestamp, say) is
recognised from the "KTAP version" header line and stripped from the lines
that follow it. Lines that are not KTAP are ignored, so log output of other
CPUs interleaved with the tests does not disturb the parse.
"""

import re

# Directives that do not count as a failure even on a "not ok" line.
PASSING_DIRECTIVES = ("SKIP", "TODO", "XFAIL")
# Directives that make even an "ok" line a failure.
FAILING_DIRECTIVES = ("TIMEOUT", "ERROR")

_HEADER = re.compile(r"^(?P<prefix>.*?)(?P<indent> *)(?:K?TAP) version (?P<ver>\d+)\s*$")
_PLAN = re.compile(r"^1\.\.(?P<n>\d+)(?:\s*#\s*(?P<reason>.*))?$")
_RESULT = re.compile(
    r"^(?P<not>not )?ok (?P<num>\d+)(?:\s+-)?(?:\s+(?P<name>[^#]*?))?\s*"
    r"(?:#\s*(?P<directive>[A-Za-z]+)\b\s*(?P<reason>.*))?$")
_SUBTEST = re.compile(r"^# Subtest: (?P<name>.*)$")
_BAIL = re.compile(r"^Bail out!(?P<reason>.*)$")


class Result:
    """One "ok N name" / "not ok N name" line and the subtest it closes."""

    def __init__(self, ok, number, name, directive, reason, depth, line):
        self.ok = ok
        self.number = number
        self.name = name
        self.directive = directive
        self.reason = reason
        self.depth = depth
        self.line = line
        self.subtest = None

    @property
    def failed(self):
        if self.directive in FAILING_DIRECTIVES:
            return True
        if self.directive in PASSING_DIRECTIVES:
            return False
        return not self.ok

    def text(self):
        """The result as a TAP line without indentation."""
        words = "ok" if self.ok else "not ok"
        out = "%s %d - %s" % (words, self.number, self.name or "(unnamed)")
        if self.directive:
            out += " # %s" % self.directive
            if self.reason:
                out += " " + self.reason
        return out


class Test:
    """A KTAP (sub)test: a plan and the results at one indentation level."""

    def __init__(self, depth, name=None, line=None):
        self.depth = depth
        self.name = name
        self.line = line
        self.plan = None
        self.plan_line = None
        self.results = []
        self.bail_out = None

    def label(self):
        if self.name:
            return "subtest '%s'" % self.name
        if self.depth == 0:
            return "KTAP document starting at console line %d" % (self.line or 0)
        return "subtest at depth %d (console line %d)" % (self.depth, self.line or 0)


class Report:
    """Every KTAP document found in a console log."""

    def __init__(self):
        self.documents = []
        self.unclosed = []

    def walk(self):
        """Yield every result of every document, depth first, in order."""
        def visit(test):
            for res in test.results:
                if res.subtest is not None:
                    yield from visit(res.subtest)
                yield res
        for doc in self.documents:
            yield from visit(doc)

    def leaf_counts(self):
        """(passed, failed) over the results that have no subtests."""
        passed = failed = 0
        for res in self.walk():
            if res.subtest is not None and res.subtest.results:
                continue
            if res.failed:
                failed += 1
            else:
                passed += 1
        return passed, failed

    def diagnostics(self):
        """The results as indented TAP lines, children before their parent,
        the way they appeared on the console."""
        lines = []
        for res in self.walk():
            lines.append("    " * res.depth + res.text())
        return lines


def _prefix_regex(prefix):
    """A regex matching console prefixes of the same shape as `prefix`:
    digit runs may change (timestamps), interior space runs may change
    width, trailing spaces are taken literally."""
    if not prefix:
        return None
    body = prefix.rstrip(" ")
    trailing = len(prefix) - len(body)
    out = []
    for tok in re.findall(r"\d+| +|[^\d ]+", body):
        if tok[0].isdigit():
            out.append(r"\d+")
        elif tok[0] == " ":
            out.append(r" *")
        else:
            out.append(re.escape(tok))
    return re.compile("^" + "".join(out) + " " * trailing)


def parse(text):
    """Parse a console log (str) and return a Report."""
    report = Report()
    stack = []              # open Test objects, stack[i].depth == i
    prefix_re = None
    pending_name = {}       # depth -> name from "# Subtest:" lines

    def close_deeper_than(depth):
        while len(stack) > depth + 1:
            report.unclosed.append(stack.pop())

    for lineno, raw in enumerate(text.splitlines(), 1):
        raw = raw.rstrip("\r\n")
        line = None
        if stack:
            if prefix_re is None:
                line = raw
            else:
                m = prefix_re.match(raw)
                if m:
                    line = raw[m.end():]
        nested = _HEADER.match(line) if line is not None else None
        if nested and nested.group("prefix") == "":
            depth = len(nested.group("indent")) // 4
        else:
            top = _HEADER.match(raw)
            if top:
                # A new top-level document. Its header fixes the prefix.
                prefix_re = _prefix_regex(top.group("prefix") + top.group("indent"))
                depth = 0
            elif line is None:
                continue
            else:
                depth = None
        if depth == 0:
            while stack:
                old = stack.pop()
                if old.depth > 0:
                    report.unclosed.append(old)
            doc = Test(0, line=lineno)
            report.documents.append(doc)
            stack.append(doc)
            pending_name.clear()
            continue
        if depth is not None:
            if depth > len(stack):
                continue    # deeper than anything open: not ours
            close_deeper_than(depth - 1)
            if len(stack) > depth:
                report.unclosed.append(stack.pop())
            stack.append(Test(depth, name=pending_name.pop(depth, None), line=lineno))
            continue

        stripped = line.lstrip(" ")
        indent = len(line) - len(stripped)
        if indent % 4:
            continue
        depth = indent // 4
        stripped = stripped.rstrip()
        if depth > len(stack):
            continue

        sub = _SUBTEST.match(stripped)
        if sub:
            pending_name[depth] = sub.group("name").strip()
            if depth < len(stack) and stack[depth].name is None and not stack[depth].results \
                    and stack[depth].plan is None and depth > 0:
                stack[depth].name = pending_name.pop(depth)
            continue

        plan = _PLAN.match(stripped)
        if plan:
            if depth == len(stack):
                # A subtest whose header line was left out (allowed in KTAP).
                stack.append(Test(depth, name=pending_name.pop(depth, None), line=lineno))
            close_deeper_than(depth)
            test = stack[depth]
            if test.plan is None:
                test.plan = int(plan.group("n"))
                test.plan_line = lineno
            continue

        res = _RESULT.match(stripped)
        if res:
            if depth >= len(stack):
                continue
            child = None
            if len(stack) > depth + 1:
                close_deeper_than(depth + 1)
                child = stack.pop()
            result = Result(ok=res.group("not") is None,
                            number=int(res.group("num")),
                            name=(res.group("name") or "").strip(),
                            directive=(res.group("directive") or "").upper() or None,
                            reason=(res.group("reason") or "").strip(),
                            depth=depth, line=lineno)
            if child is not None:
                result.subtest = child
                if child.name is None:
                    child.name = result.name
            stack[depth].results.append(result)
            pending_name.pop(depth + 1, None)
            continue

        bail = _BAIL.match(stripped)
        if bail and depth < len(stack):
            stack[depth].bail_out = bail.group("reason").strip() or "(no reason)"

    # Whatever is still open below the top level at the end never finished.
    for doc_stack_entry in stack[1:]:
        report.unclosed.append(doc_stack_entry)
    return report


def problems(report, require_tests=True):
    """Everything wrong with the KTAP in `report`, as readable strings.
    An empty list means: at least one document, every plan met, all ok."""
    out = []
    if not report.documents:
        return ["no KTAP output found on the console (no 'KTAP version 1' line)"]

    def check(test):
        if test.bail_out is not None:
            out.append("%s bailed out: %s" % (test.label(), test.bail_out))
        if test.plan is None:
            out.append("%s has no plan line (1..N)" % test.label())
        elif len(test.results) != test.plan:
            out.append("%s planned %d results but printed %d%s" % (
                test.label(), test.plan, len(test.results),
                " (truncated?)" if len(test.results) < test.plan else ""))
        for idx, res in enumerate(test.results, 1):
            if res.number != idx:
                out.append("%s: result '%s' is numbered %d, expected %d" % (
                    test.label(), res.name, res.number, idx))
                break
        for res in test.results:
            if res.failed:
                out.append("failed: %s%s" % (res.text(), "" if res.depth == 0 else
                                               " (depth %d)" % res.depth))
            if res.subtest is not None:
                check(res.subtest)

    for doc in report.documents:
        check(doc)
    for test in report.unclosed:
        out.append("%s never finished: %d of %s results, then the output stopped" % (
            test.label(), len(test.results),
            test.plan if test.plan is not None else "?"))
    if require_tests and not out:
        passed, failed = report.leaf_counts()
        if passed + failed == 0:
            out.append("KTAP output ran no test (empty plan: does test=GLOB match anything?)")
    return out
