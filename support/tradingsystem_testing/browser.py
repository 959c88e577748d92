"""A real headless Chromium (Debian's ``chromium`` package) for tests and doc pictures.

Each call starts a fresh browser with its own throw-away profile and no background network
(no updates, sync or QUIC), and waits for it with a bounded timeout.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

TIMEOUT_S = 120.0
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    # Let timers and the load event run before the DOM is dumped or the picture taken.
    "--virtual-time-budget=5000",
)


class BrowserError(RuntimeError):
    pass


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise BrowserError("chromium not found: install Debian's package with `apt-get install -y chromium`")
    return path


def _run(url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        cmd = [chromium_path(), *FLAGS, f"--user-data-dir={profile}", *extra, url]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    if proc.returncode != 0:
        raise BrowserError(f"chromium exited {proc.returncode}: {proc.stderr[-2000:]}")
    return proc


def dump_dom(url: str) -> str:
    """The DOM after the page loaded (scripts ran), as HTML."""
    return _run(url, "--dump-dom").stdout


def screenshot(url: str, out: Path, width: int = 1200, height: int = 900) -> Path:
    _run(url, f"--screenshot={out}", f"--window-size={width},{height}")
    if not out.is_file():
        raise BrowserError(f"chromium wrote no screenshot to {out}")
    return out
