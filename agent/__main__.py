import sys

from runwire.agent.main import main

sys.exit(main())
