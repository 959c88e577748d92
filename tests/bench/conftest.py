"""``bench`` lives at the repository root, outside the installed packages: make it importable.

Appended (not prepended) so that nothing at the root can shadow an installed module.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.append(ROOT)
