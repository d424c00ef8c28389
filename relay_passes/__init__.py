"""Graph-level passes on Relax (the card's folder keeps Relay's name; Relay is gone from TVM).

- `clip_gathers` (safety.py): no out-of-bounds reads on bad token ids;
- `split_weight_transforms` (weights.py): all work on weights moves out of the model, to run once
  at compile time;
- `pack_dense_layers` (dense_layout.py): matmul/conv2d with a weight -> gearshift's packed kernels.
The structure rewrites live here too, one file each (block_sparse.py with block_patterns.py,
pattern_sparse.py, circulant.py, found.py for structure already in the weights), sharing walk.py (the layer walk and the
numerical check) and costs.py (every cost model).
"""

from gearshift.relay_passes.safety import clip_gathers
from gearshift.relay_passes.weights import split_weight_transforms

__all__ = ["clip_gathers", "split_weight_transforms"]
