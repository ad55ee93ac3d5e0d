"""Runs left RUNNING by a process that is gone (killed, crashed, out of memory): each stage run records its
pid and host, and the next stage run of the experiment marks such runs FAILED.
"""

from __future__ import annotations

import os
import socket


def _alive(host: str | None, pid: str | None) -> bool:
    if host != socket.gethostname() or not pid or not pid.isdigit():
        return True  # another machine: cannot tell, leave it alone
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_stale_runs(client, experiment_id: str) -> list[str]:
    """Mark RUNNING runs whose recorded process (same host) is gone as FAILED; returns their ids."""
    stale = []
    for r in client.search_runs([experiment_id], "attributes.status = 'RUNNING'", max_results=500):
        t = r.data.tags
        if "facefoundry.pid" in t and not _alive(t.get("facefoundry.host"), t.get("facefoundry.pid")):
            client.set_tag(r.info.run_id, "facefoundry.failure", "process ended without closing the run")
            client.set_terminated(r.info.run_id, "FAILED")
            stale.append(r.info.run_id)
    return stale
