"""The aggregator on its own: intervals, keys, the LRU bound, fork reset."""

from __future__ import annotations

from appshield.operations import FileOp
from appshield.telemetry.aggregate import Aggregator
from tests.telemetry.conftest import violation

S = 1_000_000_000


def test_first_in_full_then_one_per_interval() -> None:
    agg = Aggregator(interval_s=10)
    v = violation()
    assert agg.admit(v, 0) == (0, None)
    assert all(agg.admit(v, t * S) is None for t in range(1, 10))
    assert agg.admit(v, 10 * S) == (9, None)
    assert agg.admit(v, 11 * S) is None
    (summary,) = agg.drain()
    assert summary.suppressed_count == 1
    assert agg.drain() == []


def test_key_is_rule_api_target_and_location() -> None:
    agg = Aggregator()
    assert agg.admit(violation(), 0) is not None
    assert agg.admit(violation(line=43), 0) is not None  # another code location
    assert agg.admit(violation(api="os.open"), 0) is not None
    assert agg.admit(violation(rule="other"), 0) is not None
    assert agg.admit(violation(FileOp("/etc/group", "write")), 0) is not None
    assert agg.admit(violation(), 1) is None


def test_bounded_keys_hand_back_counts_on_eviction() -> None:
    agg = Aggregator(max_keys=100)
    first = violation(FileOp("/f/0", "write"))
    agg.admit(first, 0)
    agg.admit(first, 1)  # one folded repeat
    evicted = []
    for i in range(1, 1000):
        result = agg.admit(violation(FileOp(f"/f/{i}", "write")), 2)
        assert result is not None
        if result[1] is not None:
            evicted.append(result[1])
    assert len(agg) == 100
    assert [e.suppressed_count for e in evicted] == [1]


def test_reset_after_fork_forgets() -> None:
    agg = Aggregator()
    agg.admit(violation(), 0)
    agg.reset_after_fork()
    assert len(agg) == 0
    assert agg.admit(violation(), 0) == (0, None)
