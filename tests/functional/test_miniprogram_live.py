"""The mini-program kit over real sockets against the running server (issue 14).

clients/miniprogram/test/live/ drives the kit, unchanged, through a ``wx.request`` shim on
``node:http`` as adversarial as a device (reads re-split at random inside UTF-8 characters,
merged reads, reused buffers, held response heads, silent drops). The server runs as on
Lambda: a turn goes on after its client disconnects (CHATRELAY_FINISH_ON_DISCONNECT=1).
Checked there: a stop before the response head leaves the turn ``stopped``; a drop before the
head with a requestId ends with the full stored answer; answers with CR, CRLF and emoji equal
the stored answer in both formats.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

LIVE = Path(__file__).resolve().parents[2] / "clients" / "miniprogram" / "test" / "live"


def test_the_kit_against_the_running_server(start_app):
    server = start_app(finish_on_disconnect=True)
    run = subprocess.run(["node", "--test", str(LIVE)], capture_output=True, text=True, timeout=180,
                         env={**os.environ, "CHATRELAY_LIVE_URL": server.url})
    summary = [line for line in run.stdout.splitlines() if line.startswith(("# pass", "# fail", "# skipped"))]
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "# fail 0" in summary and "# skipped 0" in summary, summary
    assert any(line.startswith("# pass") and line != "# pass 0" for line in summary), summary
