"""A pytest plugin for the device check: appends each test's outcome, as it comes, to the file
``$BJ_TEST_OUTCOMES`` (one JSON ``[nodeid, outcome]`` a line), so that the counts survive a run
killed at its time limit. Loaded with ``-p _pytest_outcomes``; under pytest-xdist only the
controlling process writes (the workers' reports reach it)."""

import json
import os

_config = None


def pytest_configure(config):
    global _config
    _config = config


def pytest_runtest_logreport(report):
    path = os.environ.get("BJ_TEST_OUTCOMES")
    if not path or hasattr(_config, "workerinput"):
        return
    if report.when == "call":
        outcome = report.outcome
    elif report.failed:
        outcome = "error"  # in setup or teardown
    elif report.skipped:
        outcome = "skipped"
    else:
        return
    with open(path, "a") as f:
        f.write(json.dumps([report.nodeid, outcome]) + "\n")
