"""examples/inline_plugin.py runs as a script and samples the Gaussian its in-process plugin registers."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "inline_plugin.py"


@pytest.mark.subprocess
def test_inline_plugin_example_runs_and_samples_its_gaussian():
    done = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=120,
                          cwd=EXAMPLE.parent.parent)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "network 'standard_gaussian' registered by 'my_plugin'" in out
    assert "network='standard_gaussian'" in out and "sampler='langevin'" in out
    numbers = re.search(r"mean \((\S+), (\S+)\), std \((\S+), (\S+)\)", out)
    assert numbers, out
    m0, m1, s0, s1 = (float(v) for v in numbers.groups())
    # 2000 chains: the standard error of a mean is 0.022 and of a std about 1.6%
    assert abs(m0) < 0.15 and abs(m1) < 0.15
    assert 0.9 < s0 < 1.12 and 0.9 < s1 < 1.12
