"""How the scripts end on a mistake the user can fix: one line, not a traceback.

Every argument, data or folder problem the library detects is a ``ValueError`` (or
``FileNotFoundError``) whose message names what is wrong and the fix. Printed as a traceback, that
line sits under 10 to 40 lines of frames that mean nothing to the user; printed alone it is the
whole answer. Set ``HF_SSLVIEWS_TRACEBACK=1`` to get the traceback (for a bug report).
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

TRACEBACK_VARIABLE = "HF_SSLVIEWS_TRACEBACK"
USAGE_ERROR_STATUS = 2  # argparse's status for a command line it refuses


def run_script(main: Callable[[], Any]) -> None:
    """Call a script's ``main()``; a ``ValueError`` or ``FileNotFoundError`` becomes ``error: <message>`` and exit status 2."""
    try:
        main()
    except (ValueError, FileNotFoundError) as error:
        if os.environ.get(TRACEBACK_VARIABLE, "") not in ("", "0"):
            raise
        script = os.path.basename(sys.argv[0]) or "hf_sslviews"
        print(f"{script}: error: {error}\n(set {TRACEBACK_VARIABLE}=1 to see the traceback)", file=sys.stderr)
        raise SystemExit(USAGE_ERROR_STATUS) from None


__all__ = ["TRACEBACK_VARIABLE", "USAGE_ERROR_STATUS", "run_script"]
