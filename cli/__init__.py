"""gearshift's command line (`gearshift ...`, or `python -m gearshift.cli ...`): the top layer, above
the compile driver and the runtime. `main` parses and dispatches; `rt3` holds the RT3 commands,
`demo` the bundled example, `common` what they share.
"""

from gearshift.cli.main import main

__all__ = ["main"]
