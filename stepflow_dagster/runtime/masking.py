"""Mask resolved secrets in what a component logs or prints while it builds.

Component code is not ours: it may log its API key, print it, or hand it to a library that does.
Three layers, each masking the values of :mod:`stepflow_dagster.runtime.secrets`:

- a log record factory (installed once for the process, cheap while no secret is known): a
  ``logging.Filter`` on one logger does not see records that propagate from child loggers, and a
  handler may be added after us; the factory sees every record when it is made, and formats its
  message and traceback there, masked;
- lfx's own structlog logger, which writes to the ``sys.stdout`` it saw when it was configured (and
  may also send records to OpenTelemetry): a processor first in its chain;
- ``sys.stdout`` / ``sys.stderr`` wrapped while a component runs (``print`` looks them up at each call;
  Dagster's compute log captures the file descriptors beneath them).

Not covered: writes straight to file descriptors 1/2 (C extensions, subprocesses), a secret split
across two ``write`` calls, and threads a component leaves running after it returns.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import traceback
from collections.abc import Iterator
from typing import Any, TextIO

from stepflow_dagster.runtime import secrets

_install_lock = threading.Lock()
_factory_installed = False


def _mask_record(record: logging.LogRecord) -> None:
    if not secrets.resolved():
        return
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: leave it to the handler, which reports it
        return
    record.msg, record.args = secrets.mask(message), ()
    if record.exc_info and record.exc_info[0] is not None:
        # Format the traceback now, masked, and drop the exception so no handler formats it again.
        record.exc_text = secrets.mask(logging.Formatter().formatException(record.exc_info))
        record.exc_info = None
    elif record.exc_text:
        record.exc_text = secrets.mask(record.exc_text)
    if record.stack_info:
        record.stack_info = secrets.mask(record.stack_info)


def install_log_masking() -> None:
    """Mask resolved secrets in every log record made from now on in this process (idempotent)."""
    global _factory_installed
    with _install_lock:
        if _factory_installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            _mask_record(record)
            return record

        logging.setLogRecordFactory(factory)
        _factory_installed = True


def _structlog_processor(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    if secrets.resolved():
        exc_info = event_dict.pop("exc_info", None)
        if exc_info:
            # Rendered here, masked, instead of by the renderer from the live exception.
            if exc_info is True:
                exc_info = sys.exc_info()
            elif isinstance(exc_info, BaseException):
                exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
            if isinstance(exc_info, tuple) and exc_info[0] is not None:
                event_dict["exception"] = "".join(traceback.format_exception(*exc_info))
        for key, value in event_dict.items():
            if isinstance(value, str):
                event_dict[key] = secrets.mask(value)
            elif isinstance(value, BaseException | dict | list | tuple):
                event_dict[key] = secrets.mask(str(value))
    return event_dict


def _install_structlog_masking() -> None:
    """First in lfx's structlog chain; again after lfx reconfigures (it replaces the list)."""
    structlog = sys.modules.get("structlog")
    if structlog is None:  # lfx not loaded: nothing logs through structlog
        return
    processors = structlog.get_config().get("processors")
    if isinstance(processors, list) and _structlog_processor not in processors:
        processors.insert(0, _structlog_processor)


class MaskedStream:
    """A text stream that masks resolved secrets in what is written to it."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(secrets.mask(text) if isinstance(text, str) else text)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


_streams_lock = threading.Lock()
_streams: list[Any] = [0, None, None]  # builds inside masking(), the streams before the first


@contextlib.contextmanager
def masking() -> Iterator[None]:
    """While a component builds: its logs and prints carry no resolved secret.

    The documents of a batch build side by side in threads: the first in wraps, the last out unwraps."""
    install_log_masking()
    _install_structlog_masking()
    with _streams_lock:
        if _streams[0] == 0:
            _streams[1:] = [sys.stdout, sys.stderr]
            sys.stdout = MaskedStream(sys.stdout)
            sys.stderr = MaskedStream(sys.stderr)
        _streams[0] += 1
    try:
        yield
    finally:
        with _streams_lock:
            _streams[0] -= 1
            if _streams[0] == 0:
                out, err = _streams[1], _streams[2]
                # Only undo our own wrapper: whoever replaced it meanwhile keeps theirs.
                if isinstance(sys.stdout, MaskedStream) and sys.stdout._stream is out:
                    sys.stdout = out
                if isinstance(sys.stderr, MaskedStream) and sys.stderr._stream is err:
                    sys.stderr = err
