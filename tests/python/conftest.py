"""pytest setup for the attn package tests.

Run from the source tree (ctest `python` does this):
    PYTHONPATH=python ATTN_LIBRARY=BUILD/libattn.so.0 python3 -m pytest tests/python
"""

import os
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # oracle.py
ROOT = os.path.dirname(os.path.dirname(HERE))
if os.path.join(ROOT, "python") not in sys.path:
    sys.path.insert(0, os.path.join(ROOT, "python"))


@pytest.fixture
def rng(request):
    # one stream per test, reproducible: seeded by the test's name
    seed = sum(map(ord, request.node.nodeid)) * 7919
    return np.random.default_rng(seed)


def pytest_report_header(config):
    import attn
    return "attn %s, libattn %s (%s)" % (attn.__version__,
                                         attn.library_version(),
                                         attn.library_path)
