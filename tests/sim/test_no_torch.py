"""The simulator path for built-in models never loads torch (STYLE.md: the simulator core imports no torch)."""
import subprocess
import sys

CODE = """
import sys
import pgf_sim, pgf_sim.sim.workloads, pgf_sim.sim.simulate, pgf_sim.sim.cli
assert 'torch' not in sys.modules, 'import loaded torch'
from pgf_sim.cli import main
rc = main(['simulate', '--model', 'vit_b', '--hw', 'a100_80gb', '--pattern', '2:4'])
assert rc == 0, rc
rc = main(['simulate', '--gemm', '64,128,256', '--hw', 'a100_80gb', '--pattern', '2:4', '--format', 'json'])
assert rc == 0, rc
leaked = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))
assert not leaked, leaked[:5]
print('NO_TORCH_OK')
"""


def test_simulate_path_loads_no_torch():
    proc = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "NO_TORCH_OK" in proc.stdout
