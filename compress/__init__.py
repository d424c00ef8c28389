"""Compression math in numpy, below both the training side (`frontend/`) and the compiler
(`relay_passes/`, `schedules/kernels/`): projection onto each structure and detection of the
structure a weight already has. Nothing here imports torch or TVM.

    blocks      r x c block sparsity (BSR): `project`, `detect_blocks`
    patterns    3x3 kernel patterns and block patterns: `library`, `fits`, `project`, `block_project`, ...
    circulant   block-circulant weights: `project`, `reconstruct`, `detect_block`
"""
