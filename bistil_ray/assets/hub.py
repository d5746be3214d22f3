"""Whether the Hugging Face hub can be reached, found out once per process.

Offline, `huggingface_hub` retries every request with back-off (about 35 s and a dozen lines of
retry messages per missing model) before the error a user needs. One short connection attempt tells
the same thing: when it fails, this process (and the Ray workers it starts, through the environment)
switches the hub libraries to offline mode, so that cached models and datasets still load at once
and anything else fails with one line.
"""

from __future__ import annotations

import os
import socket
import threading
from functools import lru_cache
from urllib.parse import urlparse

from huggingface_hub import constants

PROBE_TIMEOUT_S = 3.0


@lru_cache(maxsize=None)
def hub_reachable() -> bool:
    """A TCP connection to the hub's endpoint succeeds within PROBE_TIMEOUT_S (name lookup included).
    False without trying when offline mode is already on."""
    if constants.HF_HUB_OFFLINE:
        return False
    endpoint = urlparse(constants.ENDPOINT)
    address = (endpoint.hostname, endpoint.port or (443 if endpoint.scheme == "https" else 80))
    reached: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection(address, timeout=PROBE_TIMEOUT_S).close()
            reached.append(True)
        except OSError:
            pass

    # A thread: a name lookup that hangs is not bounded by the socket's time-out.
    probe = threading.Thread(target=connect, daemon=True)
    probe.start()
    probe.join(PROBE_TIMEOUT_S)
    return bool(reached)


def offline_unless_reachable() -> bool:
    """Turn on the hub libraries' offline mode if the hub cannot be reached; True when offline."""
    if hub_reachable():
        return False
    os.environ["HF_HUB_OFFLINE"] = "1"  # for processes started from here on (Ray's workers)
    constants.HF_HUB_OFFLINE = True
    import datasets.config  # reads the setting once, at its own import

    datasets.config.HF_HUB_OFFLINE = True
    return True
