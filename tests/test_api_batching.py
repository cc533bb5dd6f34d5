"""Chapter 9: the MicroBatcher behind /embed (no timer, per-caller results, errors isolated) and its /embed runner."""

import asyncio
import threading
import time

import pytest
import torch

from dsmini_helpers.api import BatcherStopped, MicroBatcher, embed_batch


def run_async(coro):
    return asyncio.run(coro)


def recording(fail_on=None, delay=0.05):
    seen = []

    def run_batch(items):
        seen.append(list(items))
        if fail_on is not None and fail_on in items:
            raise ValueError(f"bad item {fail_on}")
        time.sleep(delay)
        return [x * 10 for x in items]

    return seen, run_batch


async def _burst(batcher, first, rest):
    await batcher.start()
    try:
        head = asyncio.ensure_future(batcher.submit(first))
        await asyncio.sleep(0.01)  # the worker is busy with `first` while the rest queue up
        tail = await asyncio.gather(*(batcher.submit(x) for x in rest), return_exceptions=True)
        return [await head, *tail]
    finally:
        await batcher.stop()


def test_requests_that_queue_up_share_one_batch_and_get_their_own_results():
    seen, fn = recording()
    batcher = MicroBatcher(fn)
    got = run_async(_burst(batcher, 0, [1, 2, 3, 4, 5]))
    assert got == [0, 10, 20, 30, 40, 50]
    assert seen == [[0], [1, 2, 3, 4, 5]]
    assert batcher.batch_sizes == {1: 1, 5: 1}


def test_a_lone_request_runs_at_once_as_a_batch_of_one():
    seen, fn = recording(delay=0.0)

    async def one():
        b = MicroBatcher(fn, max_items=16)
        await b.start()
        try:
            return await b.submit(7)  # nothing else ever arrives: it must not wait for 15 more
        finally:
            await b.stop()

    assert run_async(one()) == 70 and seen == [[7]]


def test_max_items_caps_a_batch():
    seen, fn = recording()
    run_async(_burst(MicroBatcher(fn, max_items=2), 0, [1, 2, 3, 4, 5]))
    assert seen[0] == [0] and all(len(b) <= 2 for b in seen) and sorted(sum(seen, [])) == [0, 1, 2, 3, 4, 5]


def test_one_bad_item_fails_only_its_own_caller():
    seen, fn = recording(fail_on=3)
    got = run_async(_burst(MicroBatcher(fn), 0, [1, 2, 3, 4]))
    assert got[:3] == [0, 10, 20] and got[4] == 40
    assert isinstance(got[3], ValueError) and "bad item 3" in str(got[3])
    assert [1, 2, 3, 4] in seen and [3] in seen  # the batch failed, then each item ran alone


def test_wrong_number_of_results_is_an_error_not_a_silent_mismatch():
    async def go():
        b = MicroBatcher(lambda items: items[:-1])
        await b.start()
        try:
            return await asyncio.gather(b.submit(1), return_exceptions=True)
        finally:
            await b.stop()

    (err,) = run_async(go())
    assert isinstance(err, RuntimeError) and "results" in str(err)


def test_bad_construction_and_use_before_start():
    with pytest.raises(ValueError, match="max_items"):
        MicroBatcher(lambda x: x, max_items=0)
    with pytest.raises(BatcherStopped, match="not running"):
        run_async(MicroBatcher(lambda x: x).submit(1))


def test_stop_fails_every_waiting_caller_instead_of_leaving_them_hanging():
    seen, fn = recording(delay=0.2)

    async def go():
        b = MicroBatcher(fn, max_items=2)
        await b.start()
        tasks = [asyncio.ensure_future(b.submit(x)) for x in range(5)]
        await asyncio.sleep(0.05)  # [0, 1] is running, [2, 3], [4] are queued
        await b.stop()
        done = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=5)
        with pytest.raises(BatcherStopped):
            await b.submit(9)  # after stop: an error, not a wait
        return done

    done = run_async(go())
    assert all(isinstance(d, BatcherStopped) for d in done), done
    assert seen == [[0, 1]]


def test_a_cancelled_caller_is_skipped_and_the_batcher_restarts():
    seen, fn = recording(delay=0.1)

    async def go():
        b = MicroBatcher(fn)
        await b.start()
        first = asyncio.ensure_future(b.submit(0))
        await asyncio.sleep(0.02)
        gone = asyncio.ensure_future(b.submit(1))
        kept = asyncio.ensure_future(b.submit(2))
        await asyncio.sleep(0)
        gone.cancel()  # the client went away while queued
        got = [await first, await kept]
        await b.stop()
        await b.start()  # a stopped batcher can start again (fresh queue and worker thread)
        try:
            got.append(await b.submit(3))
        finally:
            await b.stop()
        return got, b.batch_sizes

    got, sizes = run_async(go())
    assert got == [0, 20, 30]
    assert seen == [[0], [2], [3]] and sizes == {1: 3}


def test_the_model_runs_on_one_worker_thread():
    threads = set()

    def fn(items):
        threads.add(threading.get_ident())
        return items

    run_async(_burst(MicroBatcher(fn), 0, list(range(1, 20))))
    assert len(threads) == 1 and threading.get_ident() not in threads


def test_embed_batch_matches_the_model_called_per_request():
    from dsmini_helpers.inference import Model
    from dsmini_helpers.runs import get_checkpoint

    model = Model.load(get_checkpoint("ci"), device="cpu")
    items = [(["A short one."], "mean"), (["A much longer sentence about rivers, music and old kings.",
                                           "Two."], "mean"), (["Pooled on the first token."], "cls")]
    batched = embed_batch(model)(items)
    assert [b.shape for b in batched] == [(1, model.net.config.d_model), (2, model.net.config.d_model),
                                          (1, model.net.config.d_model)]
    for (texts, pooling), got in zip(items, batched):
        torch.testing.assert_close(got, model.embed(texts, pooling=pooling), atol=1e-5, rtol=1e-4)
