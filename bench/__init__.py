"""pit-streams benchmark harness (``python -m bench`` / ``make bench``).

Every contender (hand-written confluent-kafka and aiokafka loops, faust-streaming, Quix Streams,
and the pit-streams runtime once per transport) runs as its own subprocess against the same
private local Kafka broker and the same pre-produced input, doing the same per-record work
(:mod:`bench.work`). The harness measures each from the outside: throughput from the first
output observed to the last expected distinct output, peak RSS and CPU of the subprocess tree,
and end-to-end latency at a fixed offered load.
"""
