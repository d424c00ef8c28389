"""A VTA-style int8 accelerator, simulated: its configuration, instruction set, a bit-exact
functional simulator and a cycle model. Nothing here drives hardware: gearshift has no FPGA, and
every figure the simulator gives is the model's (see docs/design/vta.md)."""
