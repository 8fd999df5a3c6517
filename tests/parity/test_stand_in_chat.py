"""The stand-in chat model (services/embeddings/server.py) speaks OpenAI's chat protocol: tool calls,
JSON output and streaming, as the openai client reads them."""

from __future__ import annotations

import json
from typing import Any

import pytest

CALCULATOR = {
    "type": "function",
    "function": {
        "name": "evaluate_expression",
        "description": "Perform basic arithmetic operations on a given expression.",
        "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}},
    },
}
FETCH = {
    "type": "function",
    "function": {
        "name": "fetch_content",
        "description": "Fetch content from one or more web pages.",
        "parameters": {
            "type": "object",
            "properties": {"urls": {"type": "array", "items": {"type": "string"}}},
        },
    },
}


@pytest.fixture(scope="module")
def client(stand_in_chat: str) -> Any:
    from openai import OpenAI

    return OpenAI(base_url=stand_in_chat, api_key="stand-in")


def ask(text: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": "You help."}, {"role": "user", "content": text}]


def test_plain_reply_echoes_the_last_user_message(client: Any) -> None:
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=ask("What is  a vector store?"))
    assert reply.choices[0].message.content == "[stand-in LLM] What is a vector store?"


def test_tool_calls_for_an_expression_and_a_url_then_an_answer_from_their_results(client: Any) -> None:
    messages = ask("What is 4*4*(33/22)+12-20? Then read http://127.0.0.2:1/page.html.")
    first = client.chat.completions.create(model="m", messages=messages, tools=[CALCULATOR, FETCH])
    assert first.choices[0].finish_reason == "tool_calls"
    calls = first.choices[0].message.tool_calls
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("evaluate_expression", {"expression": "4*4*(33/22)+12-20"}),
        ("fetch_content", {"urls": ["http://127.0.0.2:1/page.html"]}),
    ]
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages += [
        {"role": "tool", "tool_call_id": calls[0].id, "content": '{"result": "16"}'},
        {"role": "tool", "tool_call_id": calls[1].id, "content": "A page."},
    ]
    answer = client.chat.completions.create(model="m", messages=messages, tools=[CALCULATOR, FETCH])
    assert answer.choices[0].message.content.endswith(
        '-> evaluate_expression: {"result": "16"}; fetch_content: A page.'
    )


def test_no_tool_call_without_an_expression_or_url(client: Any) -> None:
    reply = client.chat.completions.create(model="m", messages=ask("Hello there"), tools=[CALCULATOR, FETCH])
    assert reply.choices[0].message.tool_calls is None
    assert reply.choices[0].message.content == "[stand-in LLM] Hello there"


def test_streamed_tool_calls_and_text(client: Any) -> None:
    stream = client.chat.completions.create(
        model="m",
        messages=ask("2+2"),
        tools=[CALCULATOR],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    args = "".join(
        c.choices[0].delta.tool_calls[0].function.arguments or ""
        for c in chunks
        if c.choices and c.choices[0].delta.tool_calls
    )
    assert json.loads(args) == {"expression": "2+2"}
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    text = client.chat.completions.create(model="m", messages=ask("Hi"), stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in text if c.choices) == "[stand-in LLM] Hi"


def test_json_object_and_json_schema_output(client: Any) -> None:
    reply = client.chat.completions.create(
        model="m", messages=ask("Name a fruit"), response_format={"type": "json_object"}
    )
    assert json.loads(reply.choices[0].message.content) == {"answer": "[stand-in LLM] Name a fruit"}
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "count": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "kind": {"enum": ["fruit", "vegetable"]},
        },
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "fruit", "schema": schema}}
    reply = client.chat.completions.create(model="m", messages=ask("Name a fruit"), response_format=fmt)
    assert json.loads(reply.choices[0].message.content) == {
        "name": "[stand-in LLM] Name a fruit",
        "count": 3,
        "tags": ["[stand-in LLM] Name a fruit"],
        "kind": "fruit",
    }


def test_forced_tool_choice_fills_the_schema(client: Any) -> None:
    """How structured output by function calling asks (langchain's with_structured_output)."""
    tool = {
        "type": "function",
        "function": {
            "name": "Answer",
            "parameters": {"type": "object", "properties": {"text": {"type": "string"}}},
        },
    }
    choice = {"type": "function", "function": {"name": "Answer"}}
    reply = client.chat.completions.create(model="m", messages=ask("Hi"), tools=[tool], tool_choice=choice)
    call = reply.choices[0].message.tool_calls[0]
    assert call.function.name == "Answer" and json.loads(call.function.arguments) == {
        "text": "[stand-in LLM] Hi"
    }
