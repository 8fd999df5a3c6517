from __future__ import annotations

import json
import math
import uuid

import pytest

from stepflow_dagster.runtime import Redacted, encode
from tests.runtime.conftest import hop


def test_plain_values_pass_through() -> None:
    value = {"a": [1, 2.5, "x", None, True, {"b": []}]}
    assert encode(value) == value
    assert hop(value) == value


def test_exotic_scalars_round_trip() -> None:
    value = [
        (1, "a"),
        b"\x00\xff",
        uuid.UUID(int=7),
        {"__sf__": "not a tag"},
        {1: "int key"},
        Redacted("n", "o"),
    ]
    assert hop(value) == value
    assert math.isnan(hop(float("nan")))


def test_message_round_trip() -> None:
    from lfx.schema.message import Message

    msg = Message(
        text="hello", sender="User", sender_name="me", session_id="s1", properties={"text_color": "red"}
    )
    back = hop(msg)
    assert type(back) is Message
    assert back == msg
    assert back.text == "hello" and back.properties.text_color == "red"


def test_data_round_trip_keeps_text_key_and_default() -> None:
    from lfx.schema.data import Data

    data = Data(data={"body": "t", "n": [1, {"x": None}]}, text_key="body", default_value="dv")
    back = hop(data)
    assert back == data
    assert back.text_key == "body" and back.default_value == "dv" and back.get_text() == "t"


def test_dataframe_round_trip_keeps_text_key_and_default() -> None:
    from lfx.schema.dataframe import DataFrame

    frame = DataFrame(
        [
            {"text": "a", "n": 1, "f": 1.5, "meta": {"k": [1]}},
            {"text": "b", "n": 2, "f": float("nan"), "meta": {}},
        ],
        text_key="n",
        default_value="zz",
    )
    back = hop(frame)
    assert isinstance(back, DataFrame)
    assert back.text_key == "n" and back.default_value == "zz"
    assert back.equals(frame)
    assert list(back.dtypes) == list(frame.dtypes)
    assert json.loads(json.dumps(encode(back))) == json.loads(json.dumps(encode(frame)))


def test_nested_lists_of_schema_values() -> None:
    from lfx.schema.data import Data
    from lfx.schema.message import Message

    value = [[Message(text="m1"), Data(data={"x": 1})], {"k": [Data(data={"y": "z"})]}]
    back = hop(value)
    assert back[0][0] == value[0][0] and back[0][1] == value[0][1] and back[1]["k"][0] == value[1]["k"][0]


def test_dataframe_with_docling_document_cells() -> None:
    from docling_core.types.doc import DoclingDocument
    from lfx.schema.dataframe import DataFrame

    doc = DoclingDocument(name="d")
    doc.add_text(label="text", text="para")
    back = hop(DataFrame([{"doc": doc, "file_path": "/x/d.md"}]))
    assert isinstance(back["doc"][0], DoclingDocument)
    assert back["doc"][0].export_to_markdown() == doc.export_to_markdown()


def test_live_objects_are_refused() -> None:
    from langchain_core.embeddings import DeterministicFakeEmbedding

    with pytest.raises(TypeError, match="LiveInput"):
        encode(DeterministicFakeEmbedding(size=4))
    with pytest.raises(TypeError, match="live object"):
        encode([object()])


def test_codec_import_is_cheap() -> None:
    import subprocess
    import sys

    code = (
        "import sys, stepflow_dagster.runtime.codec\n"
        "print(any(m.startswith(('lfx', 'pandas')) for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
