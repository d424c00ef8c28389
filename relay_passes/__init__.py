"""Graph-level passes on Relax (the card's folder keeps Relay's name; Relay is gone from TVM).

Today: `clip_gathers` (no out-of-bounds reads on bad token ids) and `split_weight_transforms`, which
moves all work on weights out of the model so it runs once, at compile time. The structure rewrites (block-sparse, pattern, circulant) will live here, one file each.
"""

from gearshift.relay_passes.safety import clip_gathers
from gearshift.relay_passes.weights import split_weight_transforms

__all__ = ["clip_gathers", "split_weight_transforms"]
