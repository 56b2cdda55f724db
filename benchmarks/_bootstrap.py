"""Make `import agent` and `import broker` mean the packages, not the benchmark scripts of the same names.

`python benchmarks/x.py` puts benchmarks/ first on sys.path, where `agent.py` and `broker.py`
(the issue's names for those benchmarks) would shadow the packages. Import this module first.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != HERE] + [str(HERE)]
