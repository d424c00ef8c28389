"""Auto-tuning of gearshift's sparse kernels: knob search guided by an XGBoost cost model, measured
here or on devices behind TVM's RPC tracker, kept in a JSON-lines database (`database.py`).
`gearshift.autotune` runs it on a whole model; the passes read the results through
`schedules/knobs.Tuning`."""
