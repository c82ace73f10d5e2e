import sys

from quantfid.cli import main

sys.exit(main())
