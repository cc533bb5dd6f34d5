"""Chapter 9: the lanes behind every endpoint (bounded queue, token budget, deadlines, errors isolated) and the batched
inference they run, checked against chapter 8's one-request-at-a-time functions on the `ci` checkpoint."""

import asyncio
import time

import pytest
import torch

from dsmini_helpers.admission import DeadlineExceeded, Lane, LaneStopped, Overloaded, Ticket, start_lane, stop_lane
from dsmini_helpers.batching import (
    Served,
    embed_batch,
    generate_batch,
    literal_tokenizer,
    predict_batch,
    predict_row,
    served_row,
    text_ids,
)
from dsmini_helpers.schemas import GenerateRequest


def recording(fail_on=None, delay=0.05):
    seen = []

    def run_batch(tickets):
        items = [t.item for t in tickets]
        seen.append(items)
        if fail_on is not None and fail_on in items:
            raise ValueError(f"bad item {fail_on}")
        time.sleep(delay)
        return [x * 10 for x in items]

    return seen, run_batch


def lane_of(run_batch, **sizes):
    return Lane("test", run_batch, **{"max_queue": 16, "max_items": 16, "max_tokens": 1000, "deadline_s": 5.0,
                                      **sizes})


async def burst(lane, first, rest, cost=1):
    """Submit `first`, then while the worker is busy with it, `rest`; every answer (or exception), in order."""
    await start_lane(lane)
    try:
        soon = time.monotonic() + 5
        head = lane.submit(first, cost, soon)
        await asyncio.sleep(0.01)  # the worker is busy with `first` while the rest queue up
        tail = [lane.submit(x, cost, soon) for x in rest]
        return await asyncio.gather(head.future, *(t.future for t in tail), return_exceptions=True)
    finally:
        await stop_lane(lane)


def test_requests_that_queue_up_share_one_batch_and_get_their_own_results():
    seen, fn = recording()
    lane = lane_of(fn)
    assert asyncio.run(burst(lane, 0, [1, 2, 3, 4, 5])) == [0, 10, 20, 30, 40, 50]
    assert seen == [[0], [1, 2, 3, 4, 5]] and lane.batch_sizes == {1: 1, 5: 1}


def test_token_budget_and_item_cap_split_batches():
    seen, fn = recording()
    asyncio.run(burst(lane_of(fn, max_tokens=10), 0, [1, 2, 3, 4, 5], cost=4))
    assert seen == [[0], [1, 2], [3, 4], [5]]  # 4 + 4 fits in 10, a third does not
    seen, fn = recording()
    asyncio.run(burst(lane_of(fn, max_items=2), 0, [1, 2, 3]))
    assert seen == [[0], [1, 2], [3]]


def test_a_request_over_the_budget_alone_still_runs():
    seen, fn = recording(delay=0.0)
    assert asyncio.run(burst(lane_of(fn, max_tokens=10), 7, [], cost=50)) == [70]


def test_a_full_queue_refuses_at_once_with_retry_after():
    seen, fn = recording(delay=0.2)

    async def scenario():
        lane = lane_of(fn, max_queue=2)
        await start_lane(lane)
        try:
            soon = time.monotonic() + 5
            lane.submit(0, 1, soon)
            await asyncio.sleep(0.01)  # running: the queue is empty again
            lane.submit(1, 1, soon), lane.submit(2, 1, soon)
            assert not lane.has_room()
            with pytest.raises(Overloaded) as refused:
                lane.submit(3, 1, soon)
            return refused.value, lane.stats
        finally:
            await stop_lane(lane)

    refused, stats = asyncio.run(scenario())
    assert refused.retry_after_s >= 1 and "full" in str(refused)
    assert stats["rejected"] == 1 and stats["accepted"] == 3


def test_expired_and_cancelled_tickets_are_dropped_before_running():
    seen, fn = recording()

    async def scenario():
        lane = lane_of(fn)
        await start_lane(lane)
        try:
            soon = time.monotonic() + 5
            head = lane.submit(0, 1, soon)
            await asyncio.sleep(0.01)
            late = lane.submit(1, 1, time.monotonic() - 1)  # deadline already passed
            gone = lane.submit(2, 1, soon)
            gone.cancel()  # its client left
            kept = lane.submit(3, 1, soon)
            return await head.future, await kept.future, late.future.done(), dict(lane.stats)
        finally:
            await stop_lane(lane)

    head, kept, late_done, stats = asyncio.run(scenario())
    assert (head, kept) == (0, 30) and seen == [[0], [3]] and not late_done
    assert stats["dropped_before_running"] == 2


def test_one_bad_item_fails_only_its_own_request():
    seen, fn = recording(fail_on=3)
    got = asyncio.run(burst(lane_of(fn), 0, [1, 2, 3, 4]))
    assert got[:3] == [0, 10, 20] and got[4] == 40 and isinstance(got[3], ValueError)
    assert seen[:2] == [[0], [1, 2, 3, 4]]  # the batch failed, then each item ran alone


def test_stop_fails_waiting_requests_and_flags_the_running_batch():
    flags = []

    def slow(tickets):
        time.sleep(0.3)
        flags.append([t.cancelled.is_set() for t in tickets])
        return [t.item for t in tickets]

    async def scenario():
        lane = lane_of(slow)
        await start_lane(lane)
        soon = time.monotonic() + 5
        running = lane.submit(0, 1, soon)
        await asyncio.sleep(0.05)
        waiting = lane.submit(1, 1, soon)
        await stop_lane(lane)
        results = await asyncio.gather(running.future, waiting.future, return_exceptions=True)
        with pytest.raises(LaneStopped):
            lane.submit(2, 1, soon)
        return results

    results = asyncio.run(scenario())
    assert all(isinstance(r, LaneStopped) for r in results) and flags == [[True]]


def test_lane_rejects_nonsense_sizes():
    with pytest.raises(ValueError):
        Lane("x", lambda t: t, max_queue=0, max_items=1, max_tokens=1, deadline_s=1)
    with pytest.raises(ValueError):
        Lane("x", lambda t: t, max_queue=1, max_items=1, max_tokens=1, deadline_s=0)


# --- batched inference against chapter 8 -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def served():
    from dsmini_helpers.inference import Model
    from dsmini_helpers.runs import get_checkpoint

    model = Model.load(get_checkpoint("ci"), device="cpu")
    return Served(model, literal_tokenizer(model.tokenizer))


def ticket(item, seconds=60.0):
    return Ticket(item, cost=0, deadline=time.monotonic() + seconds)


def gen_item(served, prompt, **knobs):
    return [served.model.cls_id, *text_ids(served.literal, prompt)], GenerateRequest(prompt=prompt, **knobs)


def test_batched_generation_equals_chapter_8_one_at_a_time(served):
    prompts = ["Deep learning is", "The city of Paris was founded", "Rivers", "A"]
    for knobs in [{"max_new_tokens": 8}, {"max_new_tokens": 6, "steps": 3}, {"max_new_tokens": 8, "steps": 4,
                                                                              "block_length": 4}]:
        together = generate_batch(served, [ticket(gen_item(served, p, **knobs)) for p in prompts])
        for p, got in zip(prompts, together):
            alone = served.model.generate(p, **knobs)
            assert got == alone, (p, knobs)


def test_seeded_sampling_is_repeatable_whatever_shares_the_batch(served):
    knobs = {"max_new_tokens": 8, "temperature": 0.9, "top_k": 10, "remasking": "random", "seed": 7}
    alone = generate_batch(served, [ticket(gen_item(served, "The city", **knobs))])[0]
    crowded = generate_batch(served, [ticket(gen_item(served, "Other text here", max_new_tokens=3)),
                                      ticket(gen_item(served, "The city", **knobs))])[1]
    assert alone == crowded and alone["new_tokens"] == 8
    other_seed = generate_batch(served, [ticket(gen_item(served, "The city", **{**knobs, "seed": 8}))])[0]
    assert other_seed["completion"] != alone["completion"]


def test_generation_stops_at_the_next_step_when_its_ticket_is_cancelled(served):
    steps_seen = []
    item = gen_item(served, "Once", max_new_tokens=32, steps=32)
    doomed, fine = ticket(item), ticket(gen_item(served, "Twice", max_new_tokens=4))
    original = served.model.net.encode

    def counting_encode(*args, **kwargs):  # cancel the first ticket after its third forward pass
        steps_seen.append(1)
        if len(steps_seen) == 3:
            doomed.cancelled.set()
        return original(*args, **kwargs)

    served.model.net.encode = counting_encode
    try:
        results = generate_batch(served, [doomed, fine])
    finally:
        del served.model.net.encode
    assert isinstance(results[0], DeadlineExceeded) and results[1]["new_tokens"] == 4
    assert len(steps_seen) == 4  # 3 passes shared, then the 4th for `fine` alone, then nothing more


def test_predict_and_embed_batches_equal_chapter_8(served):
    model = served.model
    texts = ["Paris is the [MASK] of France.", "The [MASK] sat on the [MASK].", "[MASK]"]
    items = [(predict_row(served, t), 4) for t in texts]
    got = predict_batch(served, [ticket(i) for i in items])
    for text, answer in zip(texts, got):
        want = model.fill_mask(text, top_k=4)
        assert [[c["id"] for c in m] for m in answer["masks"]] == [[c["id"] for c in m] for m in want["masks"]]
        assert answer["filled"] == want["filled"]
    sentences = ["A cat.", "A dog sat on the rug by the fire.", "Markets fell."]
    for pooling in ("mean", "cls"):
        vectors = embed_batch(served, [ticket(([served_row(served, s)], pooling)) for s in sentences])
        torch.testing.assert_close(torch.cat(vectors), model.embed(sentences, pooling=pooling), atol=1e-5,
                                   rtol=1e-4)


# --- continuous batching ---------------------------------------------------------------------------------------------
def stepping(step_s=0.01):
    """A continuous lane's run_batch in the style of the worker's: each ticket's item is its number of steps; a
    thread takes a step for every ticket in flight, and a ticket that joins comes in at the next step. Records how
    many were in flight at each step."""
    import threading

    flight, lock, in_flight = {}, threading.Lock(), []

    def loop():
        while True:
            time.sleep(step_s)
            with lock:
                if not flight:
                    continue
                in_flight.append(len(flight))
                for t in list(flight):
                    flight[t][0] -= 1
                    if flight[t][0] == 0:
                        _, done = flight.pop(t)
                        done(t, t.item * 10)

    threading.Thread(target=loop, daemon=True).start()

    def join(tickets, done):
        with lock:
            for t in tickets:
                flight[t] = [t.item, done]

    return in_flight, join


async def staggered(lane, items, gap_s=0.02):
    """Submit `items` `gap_s` apart; (answers in order, the order the answers came in)."""
    await start_lane(lane)
    order = []
    try:
        tickets = []
        for x in items:
            t = lane.submit(x, x, time.monotonic() + 10)
            t.future.add_done_callback(lambda f, x=x: order.append(x))
            tickets.append(t)
            await asyncio.sleep(gap_s)
        return await asyncio.gather(*(t.future for t in tickets), return_exceptions=True), order
    finally:
        await stop_lane(lane)


def test_a_short_request_joins_a_running_batch_and_leaves_first():
    _, join = stepping()
    lane = lane_of(join, continuous=True)
    answers, order = asyncio.run(staggered(lane, [40, 3]))
    assert answers == [400, 30] and order == [3, 40]  # a static lane would answer 40 first: 3 waited behind it


def test_a_continuous_lane_keeps_its_item_cap_and_token_budget():
    in_flight, join = stepping()
    lane = lane_of(join, continuous=True, max_items=3)
    answers, _ = asyncio.run(staggered(lane, [5] * 8, gap_s=0.001))
    assert answers == [50] * 8 and max(in_flight) == 3
    in_flight, join = stepping()
    lane = lane_of(join, continuous=True, max_tokens=10)  # cost = item: two 5s fit, a third waits
    answers, _ = asyncio.run(staggered(lane, [5] * 6, gap_s=0.001))
    assert answers == [50] * 6 and max(in_flight) == 2


def test_a_continuous_lane_that_fails_to_send_fails_only_that_batch():
    calls = []

    def join(tickets, done):
        calls.append(len(tickets))
        if len(calls) == 1:
            raise OSError("pipe broken")
        for t in tickets:
            done(t, t.item * 10)

    lane = lane_of(join, continuous=True)

    async def two():
        first, _ = await staggered(lane, [1])
        second, _ = await staggered(lane, [2])
        return first, second

    first, second = asyncio.run(two())
    assert isinstance(first[0], OSError) and second == [20]


def test_the_worker_loop_generates_continuously_like_chapter_8(served):
    """generate_continuously on a real pipe: answers equal chapter 8's, a short request that joins later leaves
    first, a request that cannot start is answered with its error, and a cancelled one stops."""
    import multiprocessing
    import pickle
    import threading
    from multiprocessing.sharedctypes import RawArray

    from dsmini_helpers.worker import generate_continuously

    ours, theirs = multiprocessing.Pipe()
    flags = RawArray("b", 4)
    threading.Thread(target=generate_continuously, args=(theirs, flags, served), daemon=True).start()
    far = time.monotonic() + 60
    long_item = gen_item(served, "The city of Paris was", max_new_tokens=24)
    ours.send_bytes(pickle.dumps([(0, long_item, 1, far)]))
    short_item = gen_item(served, "Rivers", max_new_tokens=3)
    bad_item = (gen_item(served, "x")[0], GenerateRequest.model_construct(max_new_tokens=2, steps=1,
                                                                           block_length=0))
    ours.send_bytes(pickle.dumps([(1, short_item, 1, far), (2, bad_item, 1, far)]))
    answers = []
    while len(answers) < 3:
        answers += pickle.loads(ours.recv_bytes())
    slots = [slot for slot, _ in answers]
    assert slots.index(1) < slots.index(0)  # the short one joined the long one and left before it
    got = dict(answers)
    assert got[0] == served.model.generate("The city of Paris was", max_new_tokens=24)
    assert got[1] == served.model.generate("Rivers", max_new_tokens=3)
    assert isinstance(got[2], ValueError)
    ours.send_bytes(pickle.dumps([(3, gen_item(served, "Once", max_new_tokens=64, steps=64), 1, far)]))
    flags[3] = 1  # its client has gone
    ((slot, answer),) = pickle.loads(ours.recv_bytes())
    assert slot == 3 and isinstance(answer, DeadlineExceeded)
    ours.close()
