import sys

from beam_hub.cli import main

sys.exit(main())
