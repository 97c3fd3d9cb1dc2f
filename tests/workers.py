"""Functions run in child processes by the concurrency tests (importable by name under spawn)."""

import os


def resolve_after_barrier(barrier, url, cache_dir, queue):
    import beam_hub

    barrier.wait(timeout=60)
    try:
        queue.put(("ok", os.getpid(), beam_hub.resolve(url, cache_dir=cache_dir)))
    except Exception as e:  # noqa: BLE001 - reported to the parent
        queue.put(("error", os.getpid(), f"{type(e).__name__}: {e}"))


def resolve(url, cache_dir):
    import beam_hub

    beam_hub.resolve(url, cache_dir=cache_dir)


def resolve_tiered(barrier, url, cache_dir, local_cache_dir, queue):
    import beam_hub

    if barrier is not None:
        barrier.wait(timeout=60)
    try:
        queue.put(("ok", beam_hub.resolve(url, cache_dir=cache_dir, local_cache_dir=local_cache_dir)))
    except Exception as e:  # noqa: BLE001 - reported to the parent
        queue.put(("error", f"{type(e).__name__}: {e}"))


def resolve_and_report(url, cache_dir, queue):
    import time

    import beam_hub

    try:
        path = beam_hub.resolve(url, cache_dir=cache_dir)
        queue.put(("ok", path, time.monotonic()))
    except Exception as e:  # noqa: BLE001 - reported to the parent
        queue.put(("error", f"{type(e).__name__}: {e}", time.monotonic()))


def resolve_tiered_logged(url, cache_dir, local_cache_dir, queue):
    """Resolve through a shared tier; report (status, path or error, warnings logged)."""
    import logging

    import beam_hub

    class Collect(logging.Handler):
        def __init__(self):
            super().__init__(logging.WARNING)
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    collect = Collect()
    logging.getLogger("beam_hub").addHandler(collect)
    try:
        result = ("ok", beam_hub.resolve(url, cache_dir=cache_dir, local_cache_dir=local_cache_dir))
    except Exception as e:  # noqa: BLE001 - reported to the parent
        result = ("error", f"{type(e).__name__}: {e}")
    queue.put((*result, collect.messages))
