"""Noukai's benchmark harness: time to first event, events per second, runs per second.

`make bench` (or `uv run python -m bench`) starts each target server in turn on a free loopback
port, drives it with an asyncio load generator, and writes `bench/results/latest.json` and the
generated part of `docs/benchmarks.md`.

Modules, one concept each:
- `sse_client`: a lean HTTP/1.1 + SSE client on raw asyncio streams (the load generator must cost
  far less CPU than the server it measures);
- `targets`: the `Target` interface (start/stop a server, start a streamed run, parse its events)
  and its implementations: Noukai and the bare Starlette floor;
- `floor`: the floor server itself, streaming the same frames pre-encoded;
- `procstat`: server RSS and CPU seconds from /proc;
- `load`: concurrency levels and the long stream;
- `profile`: py-spy (or cProfile) of the server under load;
- `report`: the console table, the JSON results and the docs page.
"""
