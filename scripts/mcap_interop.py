#!/usr/bin/env python3
"""Reads a replayscope archive with the official Python MCAP library (and its protobuf decoder),
as a third-party tool would, and prints what it found as one JSON object.

Usage: mcap_interop.py ARCHIVE.mcap
"""
import json
import sys

from mcap.reader import make_reader
from mcap_protobuf.decoder import DecoderFactory


def main(path: str) -> None:
    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        header = reader.get_header()
        summary = reader.get_summary()
        topics = {}
        first = None
        last = None
        count = 0
        prev_offset = None
        snapshots = []
        for schema, channel, message, decoded in reader.iter_decoded_messages(log_time_order=False):
            if channel.topic == "replayscope.state":
                # A state snapshot: the state after an event, on a channel of its own.
                assert schema.name == "replayscope.v1.StateSnapshot", schema.name
                assert len(decoded.entries) == decoded.keys, (len(decoded.entries), decoded.keys)
                assert len(decoded.state_hash) == 32
                snapshots.append({"through_offset": decoded.through_offset, "keys": decoded.keys})
                continue
            assert schema.name == "replayscope.v1.ArchivedEvent", schema.name
            assert schema.encoding == "protobuf", schema.encoding
            assert channel.message_encoding == "protobuf"
            assert channel.topic == f"{decoded.namespace}/{decoded.agent_id}", channel.topic
            if prev_offset is not None:
                assert decoded.offset == prev_offset + 1, (prev_offset, decoded.offset)
            prev_offset = decoded.offset
            topics[channel.topic] = topics.get(channel.topic, 0) + 1
            if first is None:
                first = decoded
            last = decoded
            count += 1
        metadata = {m.name: dict(m.metadata) for m in reader.iter_metadata()}
        attachments = [a.name for a in reader.iter_attachments()]
    out = {
        "profile": header.profile,
        "messages": count,
        "statistics_message_count": summary.statistics.message_count if summary and summary.statistics else None,
        "chunks": len(summary.chunk_indexes) if summary else 0,
        "topics": topics,
        "first": {"offset": first.offset, "txn_id": first.txn_id, "commit_ts": first.commit_ts,
                  "keys": [op.key for op in first.operations]} if first else None,
        "last_offset": last.offset if last else None,
        "metadata": metadata,
        "attachments": attachments,
        "snapshots": snapshots,
    }
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1])
