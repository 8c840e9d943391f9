import sys

from adaptive_sched._cli import main

sys.exit(main())
