"""The reward server: one scoring path behind every RL framework's HTTP contract (docs/server-api.md).

    basereward serve --model runs/demo/train/final [--port 8000] [--max-batch-size 32] [--max-wait-ms 5]

Files: `protocols.py` (one pydantic model per client contract), `media.py` (image sources: data URIs, paths under
a root, allow-listed URLs), `parse.py` (request -> `Sample`), `batcher.py` (cross-request dynamic batching),
`metrics.py` (Prometheus, a registry per app), `service.py` (encode -> batch -> rewards), `app.py` (`create_app`:
composes the routers), `routes_common.py` (the state routes reach as a dependency), one router per contract
(`routes_native.py`, `routes_openrlhf.py`, `routes_vllm.py`, `routes_llamafactory.py`, `routes_ops.py`),
`errors.py` (error bodies, the body-size guard), `cli.py` (the `serve` verb; `ServeConfig`, `build_app`).
fastapi/uvicorn are imported only by the app and router modules and `cli.build_app`/`cli.run`, so
`import basereward` works without them.
"""
