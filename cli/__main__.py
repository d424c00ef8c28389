import sys

from gearshift.cli.main import main

sys.exit(main())
