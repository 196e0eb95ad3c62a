"""``python -m cluster_ssl`` is the ``cluster-ssl`` command."""

import sys

from cluster_ssl.cli import main

sys.exit(main())
