"""Run one command and write its wall time, CPU time and peak RSS as JSON: the measuring shim.

Usage: launch.py RESULT.json LOG -- COMMAND ...

Why a separate, tiny process: on Linux a child's ``ru_maxrss`` includes the resident set of the
process it was spawned from (exec records the old address space's high-water mark), so a command
spawned straight from the harness, which holds numpy and friends, would be charged for the
harness's memory. This shim imports nothing heavy; its own few MB are the floor of every figure.
"""

import json
import os
import sys
import time


def main(argv: list[str]) -> int:
    result, log, sep, *command = argv
    if sep != "--" or not command:
        print(__doc__, file=sys.stderr)
        return 2
    devnull = os.open(os.devnull, os.O_WRONLY)
    err = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    actions = [(os.POSIX_SPAWN_DUP2, devnull, 1), (os.POSIX_SPAWN_DUP2, err, 2)]
    start = time.perf_counter()
    pid = os.posix_spawnp(command[0], command, os.environ, file_actions=actions)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    record = {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "returncode": os.waitstatus_to_exitcode(status),
    }
    with open(result, "w") as f:
        json.dump(record, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
