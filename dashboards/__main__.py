import sys

from dashboards.launch import main

sys.exit(main())
