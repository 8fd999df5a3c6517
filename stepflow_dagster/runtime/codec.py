"""JSON codec for the values that cross process boundaries between component ops.

Importing this module is cheap: lfx, pandas and pydantic are imported only when a value of
their kind is encoded or decoded.

Encoded form: plain JSON scalars, lists and dicts stay as they are; everything else becomes a
tagged dict ``{"__sf__": <kind>, ...}``. A plain dict that happens to hold the tag key is
wrapped so that decoding stays an exact inverse.

Live objects (Embeddings, LanguageModel, VectorStore, Tool, ...) are refused with a TypeError:
they cannot cross a process and must be rebuilt by the consumer (see ``LiveInput``).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import importlib
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

TAG = "__sf__"

# Pydantic models outside lfx's own schema classes are encoded only from these module
# prefixes: their JSON dump is lossless (DoclingDocument rows from Docling Serve,
# LangChain documents). Anything else is most likely a live client and is refused, which
# also keeps a credential-carrying model (an embeddings client) out of IO storage.
PYDANTIC_MODULE_ALLOWLIST: tuple[str, ...] = (
    "docling_core.",
    "lfx.schema.",
    "langchain_core.documents",
    "langchain_core.messages",
)


@dataclass(frozen=True)
class Redacted:
    """Stands for an output that carried a resolved secret and so was not returned.

    The consumer of such an output must rebuild the producer in its own process (LiveInput),
    where the secret is resolved again from the run's variables or the environment.
    """

    node_id: str
    output: str


def _lfx_schema() -> tuple[Any, Any, Any]:
    from lfx.schema.data import Data
    from lfx.schema.dataframe import DataFrame
    from lfx.schema.message import Message

    return Message, Data, DataFrame


def _class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _import_class(path: str) -> type:
    module_name, _, qualname = path.partition(":")
    if not module_name.startswith(PYDANTIC_MODULE_ALLOWLIST):
        msg = f"refusing to decode a model of class {path!r}: module not in the codec allowlist"
        raise TypeError(msg)
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, type):
        msg = f"{path!r} is not a class"
        raise TypeError(msg)
    return obj


def _is_pandas_missing(value: Any) -> bool:
    # pandas' NaT/NA are singletons whose class lives in pandas; checking the module avoids
    # importing pandas for every value.
    return type(value).__module__.startswith("pandas") and type(value).__name__ in {"NaTType", "NAType"}


def encode(value: Any) -> Any:
    """Turn a component value into a JSON-able structure (see module docstring)."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return {TAG: "float", "value": repr(value)}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, tuple):
        return {TAG: "tuple", "items": [encode(v) for v in value]}
    if isinstance(value, Redacted):
        return {TAG: "redacted", "node_id": value.node_id, "output": value.output}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and TAG not in value:
            return {k: encode(v) for k, v in value.items()}
        return {TAG: "dict", "items": [[encode(k), encode(v)] for k, v in value.items()]}
    if isinstance(value, bytes):
        return {TAG: "bytes", "b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, uuid.UUID):
        return {TAG: "uuid", "value": str(value)}
    if isinstance(value, _dt.datetime):
        return {TAG: "datetime", "value": value.isoformat()}
    if isinstance(value, _dt.date):
        return {TAG: "date", "value": value.isoformat()}
    if isinstance(value, Decimal):
        return {TAG: "decimal", "value": str(value)}
    return _encode_object(value)


def _encode_object(value: Any) -> Any:
    module = type(value).__module__
    # numpy scalars (from DataFrame cells) become Python scalars; the frame keeps the dtype.
    if module == "numpy" and hasattr(value, "item"):
        return encode(value.item())
    if _is_pandas_missing(value):
        return {TAG: "pd_missing", "name": type(value).__name__}
    if module.startswith("pandas") and type(value).__name__ == "Timestamp":
        return {TAG: "timestamp", "value": value.isoformat()}

    if module.startswith(("lfx.", "pandas", "pydantic", "langchain", "docling")) or hasattr(
        value, "model_dump"
    ):
        message_cls, data_cls, frame_cls = _lfx_schema()
        if isinstance(value, frame_cls):
            return _encode_frame(value)
        if isinstance(value, message_cls):
            return _with_cls(_encode_message(value), value, message_cls)
        if isinstance(value, data_cls):
            encoded = {
                TAG: "Data",
                "text_key": value.text_key,
                "default_value": encode(value.default_value),
                "data": encode(value.data),
            }
            return _with_cls(encoded, value, data_cls)
        if module.startswith("pandas") and type(value).__name__ == "DataFrame":
            return _encode_frame(frame_cls(value))
        from pydantic import BaseModel

        if isinstance(value, BaseModel) and module.startswith(PYDANTIC_MODULE_ALLOWLIST):
            return {TAG: "model", "cls": _class_path(type(value)), "value": value.model_dump(mode="json")}
    msg = (
        f"cannot encode a value of type {module}.{type(value).__qualname__}: it is a live object "
        "(or unknown type) and cannot cross a process; feed it to its consumer as a LiveInput "
        "(the consumer rebuilds the producing component in its own process)"
    )
    raise TypeError(msg)


def _with_cls(encoded: dict[str, Any], value: Any, base: type) -> dict[str, Any]:
    # Subclasses (ErrorMessage, ...) keep their class so decode rebuilds the same type.
    if type(value) is not base:
        encoded["cls"] = _class_path(type(value))
    return encoded


def _encode_message(msg: Any) -> dict[str, Any]:
    # model_dump (python mode) keeps every field; Message's JSON serializer keeps only .data.
    # The computed "text" is derived from data/content_blocks, so it is not stored twice.
    # (Message's serializers ignore ``exclude``, hence the pops.)
    fields = msg.model_dump(mode="python")
    fields.pop("data", None)
    fields.pop("text", None)
    if msg.text_stream is not None:
        msg_ = "cannot encode a streaming Message (its text is an unconsumed iterator)"
        raise TypeError(msg_)
    return {TAG: "Message", "data": encode(msg.data), "fields": encode(fields)}


def _encode_frame(frame: Any) -> dict[str, Any]:
    import pandas as pd

    columns = [str(c) for c in frame.columns]
    if len(set(columns)) != len(columns) or any(not isinstance(c, str) for c in frame.columns):
        msg = "cannot encode a DataFrame whose column names are not unique strings"
        raise TypeError(msg)
    out: dict[str, Any] = {
        TAG: "DataFrame",
        "text_key": frame.text_key,
        "default_value": encode(frame.default_value),
        "columns": columns,
        "dtypes": [str(t) for t in frame.dtypes],
        "data": [[encode(cell) for cell in frame[c].tolist()] for c in frame.columns],
    }
    if not isinstance(frame.index, pd.RangeIndex) or frame.index.start != 0 or frame.index.step != 1:
        out["index"] = [encode(i) for i in frame.index.tolist()]
    return out


def decode(obj: Any) -> Any:
    """Exact inverse of :func:`encode`."""
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    kind = obj.get(TAG)
    if kind is None:
        return {k: decode(v) for k, v in obj.items()}
    decoder = _DECODERS.get(kind)
    if decoder is None:
        msg = f"unknown encoded kind {kind!r}"
        raise ValueError(msg)
    return decoder(obj)


def _decode_message(obj: Mapping[str, Any]) -> Any:
    message_cls, _, _ = _lfx_schema()
    cls = _import_class(obj["cls"]) if "cls" in obj else message_cls
    fields = decode(obj["fields"])
    return cls(data=decode(obj["data"]), **fields)


def _decode_data(obj: Mapping[str, Any]) -> Any:
    _, data_cls, _ = _lfx_schema()
    cls = _import_class(obj["cls"]) if "cls" in obj else data_cls
    return cls(text_key=obj["text_key"], default_value=decode(obj["default_value"]), data=decode(obj["data"]))


def _decode_frame(obj: Mapping[str, Any]) -> Any:
    import pandas as pd

    _, _, frame_cls = _lfx_schema()
    columns: list[str] = obj["columns"]
    series: dict[str, Any] = {}
    for name, dtype, cells in zip(columns, obj["dtypes"], obj["data"], strict=True):
        values = [decode(c) for c in cells]
        # object columns must stay object: letting pandas infer would turn a column of
        # Python ints held as objects into int64 and break equality.
        series[name] = pd.Series(values, dtype=object if dtype == "object" else None)
        if dtype != "object":
            with contextlib.suppress(TypeError, ValueError):  # keep pandas' inference
                series[name] = series[name].astype(dtype)
    frame = frame_cls(
        pd.DataFrame(series, columns=columns),
        text_key=obj["text_key"],
        default_value=decode(obj["default_value"]),
    )
    if "index" in obj:
        frame.index = pd.Index([decode(i) for i in obj["index"]])
    return frame


def _decode_pd_missing(obj: Mapping[str, Any]) -> Any:
    import pandas as pd

    return pd.NaT if obj["name"] == "NaTType" else pd.NA


def _decode_timestamp(obj: Mapping[str, Any]) -> Any:
    import pandas as pd

    return pd.Timestamp(obj["value"])


def _decode_model(obj: Mapping[str, Any]) -> Any:
    cls = _import_class(obj["cls"])
    return cls.model_validate(obj["value"])  # type: ignore[attr-defined]


_DECODERS: dict[str, Any] = {
    "float": lambda o: float(o["value"]),
    "tuple": lambda o: tuple(decode(v) for v in o["items"]),
    "dict": lambda o: {decode(k): decode(v) for k, v in o["items"]},
    "bytes": lambda o: base64.b64decode(o["b64"]),
    "uuid": lambda o: uuid.UUID(o["value"]),
    "datetime": lambda o: _dt.datetime.fromisoformat(o["value"]),
    "date": lambda o: _dt.date.fromisoformat(o["value"]),
    "decimal": lambda o: Decimal(o["value"]),
    "redacted": lambda o: Redacted(node_id=o["node_id"], output=o["output"]),
    "Message": _decode_message,
    "Data": _decode_data,
    "DataFrame": _decode_frame,
    "pd_missing": _decode_pd_missing,
    "timestamp": _decode_timestamp,
    "model": _decode_model,
}
