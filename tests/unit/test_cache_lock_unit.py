"""The cache-wide lock: runs share it, `clean` holds it alone and deletes it last."""

from __future__ import annotations

import os
import threading
import time

import pytest

from graphbuild.cache.runs import CacheBusy, cache_lock_path, hold_cache


def test_a_run_waiting_through_a_clean_holds_the_lock_file_that_is_there_after_it(tmp_path):
    tmp = tmp_path / "cache" / "tmp"
    cleaning = hold_cache(tmp, exclusive=True)
    got: list[int] = []
    waiter = threading.Thread(target=lambda: got.append(hold_cache(tmp, exclusive=False)))
    waiter.start()
    time.sleep(0.2)  # the run is waiting for the clean
    assert not got
    cache_lock_path(tmp).unlink()  # what clean does last, still holding it
    os.close(cleaning)
    waiter.join(timeout=10)
    (shared,) = got
    assert os.fstat(shared).st_ino == os.stat(cache_lock_path(tmp)).st_ino
    with pytest.raises(CacheBusy):  # a second clean sees the run
        hold_cache(tmp, exclusive=True)
    os.close(shared)
    os.close(hold_cache(tmp, exclusive=True))
