"""Whether the Hugging Face hub can be reached, found out once per process and within seconds.

Without a network, huggingface_hub retries each request five times with back-off: about 25 s and
ten "Retrying in 8s" lines per file before the one line that matters. So before the first hub
call of a process, `unreachable()` sends one HEAD request to the hub's address (through the proxy
the environment names, as the hub libraries would) with a short timeout, and keeps the answer. An
HTTPS answer with a valid certificate proves the hub itself answers (a bare TCP connection does
not: a sandbox or a captive portal may accept any connection). When the hub cannot be reached, the
hub libraries (huggingface_hub, datasets, transformers) are switched to their offline mode for the
rest of the process: what the local hub cache holds is still used, nothing else is tried, and the
caller says so in one line, with the cause. An offline variable the user has set (HF_HUB_OFFLINE,
...) counts as unreachable without a probe. No message built from here asks the user to set a
variable, since none is needed: the probe does its job.
"""
from __future__ import annotations

import os
import socket
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request

PROBE_TIMEOUT_S = 3.0  # a reachable host answers in well under a second; a black hole costs this once
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
DATASETS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")  # the variables that keep datasets offline
MODELS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")   # those that keep models and tokenizers offline
TRUE = ("1", "true", "yes", "on")
_answer: dict[str, str | None] = {}  # endpoint -> why it cannot be reached (None: reachable), per process


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def offline_variables() -> list[str]:
    """The offline variables set to a true value (HF_DATASETS_OFFLINE=0 explicitly allows datasets online)."""
    return [v for v in OFFLINE_VARIABLES if os.environ.get(v, "").strip().lower() in TRUE]


def probe(url: str | None = None, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when the hub (its HTTP(S) server) answers a HEAD request within `timeout`; else why not,
    in a few words. It runs in a thread, so that a hanging name resolver costs `timeout` too."""
    url = url or endpoint()
    host = urllib.parse.urlsplit(url).netloc or url
    result: list[str | None] = []

    def ask():
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
            result.append(None)
        except urllib.error.HTTPError as e:  # it answered; a server error is the hub being down
            result.append(None if e.code < 500 else f"{host} answered HTTP {e.code}")
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            if isinstance(reason, (socket.timeout, TimeoutError)):
                result.append(f"{host}: no answer within {timeout:g} s")
            else:
                text = getattr(reason, "strerror", None) or str(reason)
                result.append(f"{host}: {text.lower()}")  # no DNS: "name or service not known"
    worker = threading.Thread(target=ask, daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    return result[0] if result else f"{host}: no answer within {timeout:g} s (name resolution hangs)"


def unreachable(variables: tuple[str, ...] = OFFLINE_VARIABLES) -> str | None:
    """None when the hub may be used; else why not: one of `variables` set (DATASETS for data,
    MODELS for models and tokenizers), or the probe's answer. The first call of a process probes;
    a failed probe switches the hub libraries to offline mode (local hub cache only, no retries),
    again at each call (a library imported since then is told too)."""
    variables = [v for v in offline_variables() if v in variables]
    if variables:
        return f"{' and '.join(variables)} {'is' if len(variables) == 1 else 'are'} set"
    url = endpoint()
    if url not in _answer:
        _answer[url] = probe(url)
    if _answer[url] is not None:
        go_offline()
    return _answer[url]


def go_offline() -> None:
    """The hub libraries' offline mode, from now on in this process. huggingface_hub (and
    transformers, which asks it) reads its flag at each call; datasets copies it when imported, so
    a datasets already imported is told too (call again after importing it)."""
    try:
        from huggingface_hub import constants
        constants.HF_HUB_OFFLINE = True
    except ImportError:  # no hub library: nothing would reach the hub anyway
        pass
    config = sys.modules.get("datasets.config")
    if config is not None:
        config.HF_HUB_OFFLINE = True
        config.HF_DATASETS_OFFLINE = True


def hub_cache_dir() -> str:
    try:
        from huggingface_hub import constants
        return constants.HF_HUB_CACHE
    except ImportError:
        return "~/.cache/huggingface/hub"


def in_hub_cache(repo_id: str, filename: str = "config.json") -> bool:
    """Whether the local hub cache holds this file of a model repository (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
        return isinstance(try_to_load_from_cache(repo_id, filename), str)
    except Exception:  # noqa: BLE001 - an id the hub library refuses is not in its cache either
        return False
