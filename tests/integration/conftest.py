"""pytest setup for the integration tests (run as root with /usr/bin/python3).

Tests that need something (root, hugepages, the binaries) fail with the
reason; nothing is skipped.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import topo  # noqa: E402


def pytest_report_header(config):
    return [f"ravelin build dir: {topo.build_dir()} (set RAVELIN_BUILD to change)"]
