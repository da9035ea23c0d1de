"""Noukai's benchmark harness: time to first event, events per second, runs per second.

`make bench` (or `uv run python -m bench`) starts each target server in turn on a free loopback
port (Noukai embedded, Noukai scaled out, LangGraph's in-memory dev server, the floor, Noukai with
telemetry on and off), drives it
with an asyncio load generator, and writes `bench/results/latest.json` and the generated parts of
`docs/benchmarks.md`.

Modules, one concept each:
- `sse_client`: a lean HTTP/1.1 + SSE client on raw asyncio streams (the load generator must cost
  far less CPU than the server it measures);
- `targets`: the `Target` interface (start/stop a server, start a streamed run, parse its events)
  and its implementations: Noukai, LangGraph's dev server and the bare Starlette floor;
- `targets_scaled`: Noukai scaled out (`noukai-scaled`): one API process and one worker process on
  PostgreSQL and Redis, measured per process; `deployment` starts such a deployment and `services`
  reaches PostgreSQL (a fresh database per deployment) and Redis;
- `targets_telemetry`: the embedded server with metrics scraped and traces exported
  (`noukai-telemetry-on`, to `otlp_sink`, a do-nothing OTLP/HTTP receiver) and with both off
  (`noukai-telemetry-off`); `telemetry_pair` measures the two side by side in alternating
  windows, with py-spy's share of telemetry in the "on" server's samples, and `report_telemetry`
  writes their "Telemetry on vs off" section;
- `lag`: the event lag from the engine's emit to the client's receipt, and where a run's time to
  first event goes;
- `idle`, `soak` (`python -m bench.idle`, `python -m bench.soak`): idle streams per GB on one API
  process, and RSS growth under a continuous load;
- `floor`: the floor server itself, streaming the same frames pre-encoded;
- `procstat`: server RSS and CPU seconds from /proc;
- `load`: concurrency levels and the long stream;
- `profile`: py-spy (or cProfile) of the server under load;
- `report`: the console table, the JSON results, the issue's targets and the docs page;
  `report_scaled`: the scaled-out section of the docs page (embedded vs scaled out, per process);
- `langgraph/`: LangGraph's side, its own uv project (pinned by its `uv.lock`, installed into
  `bench/langgraph/.venv` by `make bench`): `langgraph.json` and the graphs, `bench_graphs.py`.
"""
