"""``python -m cube_stack.runtime``: the built-in model runtime on its own (see runtime/standalone.py)."""

import sys

from cube_stack.runtime.standalone import main

if __name__ == "__main__":
    sys.exit(main())
