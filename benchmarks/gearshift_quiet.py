"""Import first in every benchmark: sets gearshift.bench.QUIET_POOLS in the environment before
torch or TVM load (they read it once, at load; `import gearshift` already loads both).

The values are repeated here, not imported, because importing gearshift would load them too early;
tests/test_bench.py checks the two lists agree.
"""

import os

QUIET = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "0", "KMP_BLOCKTIME": "0",
         "TVM_THREAD_POOL_SPIN_COUNT": "0"}
for _key, _value in QUIET.items():
    os.environ.setdefault(_key, _value)
