"""Lowering onto the simulated VTA-style accelerator (`runtime/vta/`): int8 quantisation and the
instruction streams of dense and block-sparse matmuls."""
