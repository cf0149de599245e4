"""``python -m cube_stack.proxy``: serve the proxy configured by ``CUBE_PROXY_*`` variables."""

from cube_stack.proxy.server import main

main()
