#!/usr/bin/env python3
"""Makes tests/data/research-agent.jsonl the way users make such a file: a small research agent
writes its session through the Statehouse Python SDK (PyPI `statehouse`) into a real
`statehoused`, then its Replay is dumped as JSON Lines (no offsets, no wall-clock commit times;
the agent keeps its own times inside the values, as agents do).

    pip install statehouse
    STATEHOUSE_ADDR=127.0.0.1:50999 STATEHOUSE_USE_MEMORY=1 statehoused &
    scripts/make-agent-fixture.py 127.0.0.1:50999 > tests/data/research-agent.jsonl
"""

import dataclasses
import json
import sys
from datetime import datetime, timedelta, timezone

from statehouse import Statehouse

url = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051"
agent = "research-7"
client = Statehouse(url=url, namespace="research")
clock = datetime(2026, 11, 30, 14, 2, 11, 250000, tzinfo=timezone.utc)


def now(ms):
    global clock
    clock += timedelta(milliseconds=ms)
    return clock.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def commit(writes, deletes=()):
    with client.begin_transaction() as tx:
        for key, value in writes:
            tx.write(agent, key, value)
        for key in deletes:
            tx.delete(agent, key)


commit([("session", {"id": "session-179543", "user": "u-311", "started_at": now(0), "status": "open"})])
commit([("question", {"text": "Which of our EU warehouses had the most late shipments in October, and why?",
                      "asked_at": now(420)})])
plan = ["find the October shipment table", "count late shipments per EU warehouse",
        "read the incident notes of the worst one", "answer with the number and the cause"]
commit([("plan", {"steps": plan, "made_at": now(1800), "model": "planner-v3"})])
answers = [
    ("sql", {"query": "select warehouse, count(*) from shipments where late and month = '2026-10' group by 1",
             "rows": 6, "ms": 182}),
    ("sql", {"query": "select warehouse, late, total from shipment_stats where region = 'eu'",
             "rows": 4, "ms": 95}),
    ("search", {"query": "incident notes warehouse dublin october", "hits": 3, "ms": 640}),
    ("read", {"doc": "incidents/2026-10-dub-03.md", "chars": 4812, "ms": 51}),
]
for i, (tool, call) in enumerate(answers):
    step = f"step/{i + 1}"
    commit([(step, {"n": i + 1, "does": plan[min(i, 3)], "status": "running", "at": now(300)})])
    commit([(f"tool/{i + 1}", {"tool": tool, **call, "at": now(call["ms"])}),
            (step, {"n": i + 1, "does": plan[min(i, 3)], "status": "done", "at": now(20)})])
commit([("scratch", {"note": "dublin: 212 late of 1,904; conveyor outage 2026-10-14..17", "at": now(900)})])
commit([("answer", {"text": "Dublin: 212 of 1,904 shipments (11.1%) were late in October, most of them "
                            "during the conveyor outage of 14-17 October.",
                    "confidence": 0.82, "at": now(2400)})], deletes=["scratch"])
commit([("session", {"id": "session-179543", "user": "u-311", "started_at": "2026-11-30T14:02:11.250Z",
                     "status": "answered", "ended_at": now(150)})])

def plain(o):
    """The SDK hands lists inside values back as protobuf ListValue (and nested objects as
    Struct): make them JSON, as a user's dump script has to."""
    from google.protobuf import struct_pb2

    if isinstance(o, struct_pb2.Struct):
        return {k: o[k] for k in o.keys()}
    return [x for x in o]


for ev in client.replay(agent):
    print(json.dumps(dataclasses.asdict(ev), default=plain, separators=(",", ":")))
