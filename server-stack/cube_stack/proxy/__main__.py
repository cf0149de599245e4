"""``python -m cube_stack.proxy``: serve the proxy configured by ``CUBE_PROXY_*`` variables."""

import sys

from cube_stack.proxy.standalone import main

sys.exit(main())
