"""SharedRuns (spread_core.shared_runs): every caller returns after a run that began after it called,
at most one run is in flight, concurrent callers share runs, failures reach every caller of a
run, and a cancelled caller does not cancel the run the others wait for."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spread_core.shared_runs import SharedRuns


class Recorder:
    """A run that takes ``lengths[i]`` loop turns; events are stamped with a logical clock."""

    def __init__(self, lengths: list[int]) -> None:
        self.clock = itertools.count()
        self.lengths = iter(lengths)
        self.runs: list[tuple[int, int]] = []  # (start, end) stamps
        self.in_flight = 0
        self.most_in_flight = 0

    async def work(self) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        start = next(self.clock)
        for _ in range(next(self.lengths, 1)):
            await asyncio.sleep(0)
        self.runs.append((start, next(self.clock)))
        self.in_flight -= 1


@settings(max_examples=200, deadline=None)
@given(
    arrivals=st.lists(st.integers(min_value=0, max_value=6), min_size=1, max_size=30),
    lengths=st.lists(st.integers(min_value=0, max_value=5), max_size=40),
)
def test_every_caller_waits_for_a_run_that_began_after_it_called(
    arrivals: list[int], lengths: list[int]
) -> None:
    recorder = Recorder(lengths)
    shared = SharedRuns(recorder.work)
    calls: list[tuple[int, int]] = []  # (called, returned) stamps

    async def caller(delay: int) -> None:
        for _ in range(delay):
            await asyncio.sleep(0)
        called = next(recorder.clock)
        await shared()
        calls.append((called, next(recorder.clock)))

    async def main() -> None:
        await asyncio.gather(*(caller(delay) for delay in arrivals))

    asyncio.run(main())
    assert len(calls) == len(arrivals)
    assert recorder.most_in_flight == 1
    for called, returned in calls:
        assert any(called < start and end < returned for start, end in recorder.runs), (called, returned)
    assert shared.runs == len(recorder.runs) <= len(arrivals)


def test_concurrent_callers_share_runs() -> None:
    recorder = Recorder([3] * 100)
    shared = SharedRuns(recorder.work)

    async def main() -> None:
        await asyncio.gather(*(shared() for _ in range(50)))

    asyncio.run(main())
    assert shared.runs == 1  # all 50 called before the first run began

    async def staggered() -> None:
        first = asyncio.ensure_future(shared())
        await asyncio.sleep(0)  # the first run has begun
        await asyncio.gather(first, *(shared() for _ in range(49)))

    asyncio.run(staggered())
    assert shared.runs == 3  # then one more, for the 49 that arrived during it


def test_a_failed_run_raises_in_each_of_its_callers_and_the_next_run_is_fresh() -> None:
    outcomes = iter([RuntimeError("the database went away"), None])

    async def work() -> None:
        await asyncio.sleep(0)
        failure = next(outcomes)
        if failure is not None:
            raise failure

    shared = SharedRuns(work)

    async def main() -> list[BaseException | None]:
        return await asyncio.gather(shared(), shared(), return_exceptions=True)

    # Both arrive before the first run begins its work: they share it.
    first = asyncio.run(main())
    assert [type(result) for result in first] == [RuntimeError, RuntimeError]
    asyncio.run(shared())  # the next call runs again and succeeds


def test_a_cancelled_caller_does_not_cancel_the_run_the_others_wait_for() -> None:
    finished: list[bool] = []

    async def work() -> None:
        await asyncio.sleep(0.05)
        finished.append(True)

    shared = SharedRuns(work)

    async def main() -> None:
        impatient = asyncio.ensure_future(shared())
        patient = asyncio.ensure_future(shared())
        await asyncio.sleep(0.01)
        impatient.cancel()
        await patient
        with pytest.raises(asyncio.CancelledError):
            await impatient

    asyncio.run(main())
    assert finished == [True]


def test_each_event_loop_has_its_own_runs() -> None:
    recorder = Recorder([])
    shared = SharedRuns(recorder.work)
    for _ in range(3):
        asyncio.run(shared())  # a run left by a closed loop never blocks the next loop
    assert shared.runs == 3
