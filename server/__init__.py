"""The runwire collector: stores what agents stream in and answers queries.

Modules: `app` (the Collector: store, gRPC and HTTP on one loop), `main` / `__main__` (the
`runwire server` command), `ingest` (Ingest service), `batches` (request decoding), `committer`
(group commit), `query` (Runs service), `http` (health, Prometheus, status JSON), `telemetry`
(counters), `rules` (backend-neutral validation), `records` (store records), `errors`
(refusals and their gRPC codes), `limits` (collector-side limits), `store` (storage backends).
"""
