"""pytest setup for the integration tests (run as root with /usr/bin/python3).

Tests that need something (root, hugepages, the binaries) fail with the
reason; nothing is skipped.
"""
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(__file__))

import topo  # noqa: E402


def _terminate(signum, frame):
    # SIGTERM (e.g. from `timeout`): unwind like Ctrl-C, so fixtures stop the
    # gateways and delete the namespaces.
    raise KeyboardInterrupt(f"signal {signum}")


signal.signal(signal.SIGTERM, _terminate)


def pytest_report_header(config):
    return [f"ravelin build dir: {topo.build_dir()} (set RAVELIN_BUILD to change)"]
