"""ruff over the whole repository, with the settings of pyproject.toml."""
import shutil
import subprocess
import sys

import pytest
from helpers import REPO

pytestmark = pytest.mark.fast


def test_ruff_passes():
    ruff = shutil.which('ruff') or shutil.which('ruff', path=str(REPO / '.venv' / 'bin'))
    command = [ruff] if ruff else [sys.executable, '-m', 'ruff']
    result = subprocess.run(command + ['check', str(REPO)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
