"""The benchmark script runs (its figures are for people to read, not for tests to time)."""

from __future__ import annotations

from benchmarks.inference import main, messages, parse_args


async def test_classification_benchmark_runs_and_all_three_ways_agree() -> None:
    result = await main(parse_args(["--messages", "12", "--rounds", "1", "--skip-chat"]))

    assert result["same_labels"] is True
    assert result["messages"] == 12
    for key in ("engine_vs_naive", "engine_vs_raw", "max_loop_lag_ms_engine"):
        assert result[key] > 0


def test_benchmark_messages_are_varied_and_deterministic() -> None:
    texts = messages(256)

    assert texts == messages(256)
    assert len(set(texts)) == 256
    assert {len(t.split()) for t in texts} >= {6, 40}
