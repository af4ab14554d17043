"""The storage retry settings and how a deadline shrinks them (no services needed)."""

from __future__ import annotations

import time

import pytest
from kafka_backup import Deadline
from kafka_backup.config import storage_from_url
from kafka_backup.errors import ConfigError
from kafka_backup.storage import RetryLimits, open_store

pytestmark = pytest.mark.faults

URL = "s3://bkt/p?endpoint=http://127.0.0.1:9&region=us-east-1&path_style=true&allow_http=true"


def test_defaults_and_validation_name_the_field() -> None:
    cfg = storage_from_url(URL)
    assert RetryLimits.of(cfg) == RetryLimits(30.0, 30, 60.0, 0.1, 15.0, 3.0)
    cfg = storage_from_url(URL + "&retry_max_retries=0&retry_timeout_seconds=5")
    assert (cfg.retry_max_retries, cfg.retry_timeout_seconds) == (0, 5.0)
    with pytest.raises(ConfigError, match="retry_backoff_base"):
        storage_from_url(URL + "&retry_backoff_base=1")
    with pytest.raises(ConfigError, match="retry_max_retries"):
        storage_from_url(URL + "&retry_max_retries=-1")
    with pytest.raises(ConfigError, match=r"retry_backoff_initial_seconds .* exceeds retry_backoff_max_seconds"):
        storage_from_url(URL + "&retry_backoff_initial_seconds=20&retry_backoff_max_seconds=10")


@pytest.mark.parametrize("seconds", [0.2, 1.0, 3.0, 10.0, 40.0, 100.0, 1000.0])
def test_shrunk_limits_fit_the_time_they_are_given(seconds: float) -> None:
    full = RetryLimits(30.0, 30, 60.0, 0.1, 15.0, 3.0)
    lim = full.within(seconds)
    assert lim.worst_case <= max(seconds, 1.0) + 1e-9, lim
    assert lim.request_timeout >= 1.0 and lim.request_timeout <= full.request_timeout
    assert lim.retry_timeout <= full.retry_timeout and lim.backoff_max <= full.backoff_max
    if seconds >= full.worst_case:
        assert lim is full


def test_a_bounded_store_reopens_with_less_as_its_deadline_nears() -> None:
    store = open_store(URL)
    assert store.bounded(None) is store
    bounded = store.bounded(Deadline.after(4.0))
    assert bounded is not store and store.limits == RetryLimits.of(storage_from_url(URL))
    _ = bounded._inner  # what every call goes through
    assert bounded.limits is not None and bounded.limits.worst_case <= 4.0
    first = bounded.limits
    time.sleep(1.5)
    _ = bounded._inner
    assert bounded.limits.worst_case < first.worst_case <= 4.0
    file_store = open_store("memory://retry-limits")
    assert file_store.bounded(Deadline.after(1)) is file_store  # no retries to bound
