"""Ask the ingested documents a question: k-NN in OpenSearch with the same embeddings endpoint.

    uv run python scripts/search.py "How do bees tell each other where flowers are?"

Reads OPENSEARCH_URL, OPENSEARCH_INDEX (documents), OPENAI_BASE_URL and EMBEDDINGS_FIELD from the
environment (services/up writes var/services/services.env).
"""

from __future__ import annotations

import os
import sys

from openai import OpenAI
from opensearchpy import OpenSearch


def main() -> int:
    question = " ".join(sys.argv[1:]) or "How do bees tell each other where flowers are?"
    vector = (
        OpenAI(base_url=os.environ.get("OPENAI_BASE_URL", "http://127.0.0.2:8011/v1"), api_key="local")
        .embeddings.create(model="text-embedding-3-small", input=question)
        .data[0]
        .embedding
    )
    field = os.environ.get("EMBEDDINGS_FIELD", "chunk_embedding_text_embedding_3_small")
    client = OpenSearch(hosts=[os.environ.get("OPENSEARCH_URL", "http://127.0.0.1:9200")])
    body = {"size": 3, "query": {"knn": {field: {"vector": vector, "k": 3}}}, "_source": ["filename", "text"]}
    hits = client.search(index=os.environ.get("OPENSEARCH_INDEX", "documents"), body=body)["hits"]["hits"]
    print(f"Q: {question}")
    for hit in hits:
        text = " ".join(hit["_source"]["text"].split())
        print(f"  {hit['_score']:.3f}  {hit['_source']['filename']}: {text[:160]}")
    return 0 if hits else 1


if __name__ == "__main__":
    sys.exit(main())
