"""nmikit's QEMU test harness (python3 standard library only).

qemu      build a QEMU command line, run it, map its exit status
qmp       a small QMP client (inject-nmi, human monitor commands, events)
actions   injections fired by console lines or timers (qmp=, send= fields)
ktap      parse and judge KTAP v1 output found on the console
scenarios the tests/scenarios.conf format and the verdict on one run
"""
