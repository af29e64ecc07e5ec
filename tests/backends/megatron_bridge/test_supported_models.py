"""README's supported-models tables are generated, and must match the installed Megatron-Bridge."""

import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.megatron


def test_readme_tables_are_current():
    out = subprocess.run(
        [sys.executable, "scripts/supported_models.py", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]
