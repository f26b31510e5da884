"""The reward server: one scoring path behind every RL framework's HTTP contract (specs/server-api.md).

    basereward serve --model runs/demo/train/final [--port 8000] [--max-batch-size 32] [--max-wait-ms 5]

Files: `protocols.py` (one pydantic model per client contract), `media.py` (image sources: data URIs, paths under
a root, allow-listed URLs), `parse.py` (request -> `Sample`), `batcher.py` (cross-request dynamic batching),
`metrics.py` (Prometheus text), `service.py` (encode -> batch -> rewards), `app.py` (the FastAPI routes),
`cli.py` (the `serve` verb). fastapi/uvicorn are imported only by `app.py` and `cli.run`, so `import basereward`
works without them.
"""
