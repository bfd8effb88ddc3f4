"""Compare the running environment's installed distributions with a pip-compile lock file.

Prints one line per difference and exits 1 if any; used by .ci/run (must agree) and by
.ci/latest (to show what a refresh of the lock would change).
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main(lock_path: str) -> int:
    locked = {}
    for line in Path(lock_path).read_text(encoding="utf-8").splitlines():
        match = PIN.match(line)
        if match:
            locked[canonical(match[1])] = match[2]
    installed = {canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}
    ignored = {"pip", "setuptools", "wheel", "kd-atlas"}
    differences = [
        f"{name}: lock {version}, installed {installed.get(name, '(missing)')}"
        for name, version in sorted(locked.items())
        if installed.get(name) != version
    ]
    differences += [
        f"{name}: installed {version}, not in the lock"
        for name, version in sorted(installed.items())
        if name not in locked and name not in ignored
    ]
    print("\n".join(differences) or "installed versions agree with the lock")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
