"""Fixtures shared by every test module (a Ray cluster, tiny and offline teachers), the markers each
kind of test gets from its folder, and how the test process ends. Helpers that are not fixtures live
in modules of their own beside this file (`sweep_fakes`, `tiny_task`, `tiny_token_task`,
`tiny_students`, `fixtures_teacher`, `run_cli`, `storage_faults`), imported by name.

    tests/unit  one module, function or reader at a time, on tiny random models: seconds each
    tests/ray   tests that start a local Ray cluster (marker `ray`)
    tests/e2e   the pipeline end to end, on the offline teacher or a tiny one (marker `e2e`)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from fixtures_teacher import e5_teacher_dir, offline_hub, tiny_bert_dir  # noqa: F401  (fixtures for every module)


KINDS = ("ray", "e2e")  # the folders whose tests carry a marker of the folder's name


def pytest_collection_modifyitems(config, items):
    for item in items:
        kind = Path(item.fspath).parent.name
        if kind in KINDS:
            item.add_marker(kind)


@pytest.fixture
def cluster():
    """A local Ray cluster of one node: 2 CPUs and 2 trial slots, like the sweep's own on this machine."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "resources": {"trial_driver": 2}})
    yield cluster
    cluster.shutdown()


# The test process starts and stops Ray many times. Native threads that a stopped Ray session leaves
# behind can crash the interpreter's own finalisation (ray-project/ray#31145), after every test has
# passed and the report is printed: seen once in CI as "296 passed", then "make: *** [...] Segmentation fault".
# Nothing of the tests runs after pytest unconfigures, so the process leaves with pytest's exit status
# without finalising.
_exit_status: int | None = None


def pytest_sessionfinish(session, exitstatus):
    global _exit_status
    _exit_status = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    if _exit_status is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status)


@pytest.fixture(autouse=True)
def torch_threads_restored():
    """A bench called in-process sets torch's thread count for its own timing; a later test that
    compares results bit for bit with a fresh interpreter needs the default back (float reductions
    split by thread)."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
