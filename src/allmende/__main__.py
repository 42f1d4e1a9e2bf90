import sys

from allmende.cli.main import main

sys.exit(main())
