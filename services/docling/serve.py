"""Start the real Docling Serve, with Docling's model-free PDF pipeline wired in.

Run with the service venv:

    services/docling/.venv/bin/python services/docling/serve.py run --host 127.0.0.2 --port 5001

Arguments are those of ``docling-serve``. Why a wrapper: this machine cannot reach a model hub,
and docling-jobkit (which executes Docling Serve's conversions) builds the *standard* PDF pipeline
(layout model weights from Hugging Face) for every request, whatever the input format, so even
HTML or DOCX requests fail offline. Docling itself ships ``NativePdfPipeline`` (docling-parse text
cells, no layout/OCR/table models) and Docling Serve accepts ``"pipeline": "native"`` in the
request options, but docling-jobkit 3.9 answers "The pipeline ProcessingPipeline.NATIVE is not
implemented". We add that branch, nothing else:

* ``"pipeline": "native"`` -> ``NativePdfFormatOption(NativePdfPipelineOptions(...))``.
* With ``STEPFLOW_DOCLING_STANDARD_AS_NATIVE=1`` a request for the ``standard`` pipeline (the
  default, which is what the stock Langflow DoclingRemote component sends) is served by the native
  pipeline as well, so unmodified flows work offline. ``services/stack.py`` sets it by default.

Everything else (HTTP API, async tasks, HTML/DOCX/Markdown backends) is stock Docling Serve.
"""

from __future__ import annotations

import logging
import os
import sys

_log = logging.getLogger("stepflow.docling")


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def install_native_pipeline() -> None:
    from docling.datamodel.pipeline_options import NativePdfPipelineOptions, ProcessingPipeline
    from docling.document_converter import NativePdfFormatOption
    from docling_jobkit.convert.manager import DoclingConverterManager

    original = DoclingConverterManager.get_pdf_pipeline_opts
    if getattr(original, "_stepflow_native", False):
        return
    standard_as_native = _truthy(os.environ.get("STEPFLOW_DOCLING_STANDARD_AS_NATIVE"))

    def get_pdf_pipeline_opts(self, request):  # type: ignore[no-untyped-def]
        pipeline = request.pipeline
        if pipeline == ProcessingPipeline.NATIVE or (
            standard_as_native and pipeline == ProcessingPipeline.STANDARD
        ):
            kwargs = {}
            if getattr(request, "document_timeout", None) is not None:
                kwargs["document_timeout"] = request.document_timeout
            options = NativePdfPipelineOptions(
                generate_page_images=False,
                generate_picture_images=bool(getattr(request, "include_images", False)),
                **kwargs,
            )
            return NativePdfFormatOption(pipeline_options=options)
        return original(self, request)

    get_pdf_pipeline_opts._stepflow_native = True  # type: ignore[attr-defined]
    DoclingConverterManager.get_pdf_pipeline_opts = get_pdf_pipeline_opts  # type: ignore[method-assign]
    _log.warning(
        "stepflow: docling-jobkit patched: pipeline=native enabled%s",
        " (standard served as native)" if standard_as_native else "",
    )


def main() -> None:
    # Offline: never try a model hub (the default standard pipeline would).
    for key, value in {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "DO_NOT_TRACK": "1",
        # The layout models cannot be loaded here; don't try at boot.
        "DOCLING_SERVE_LOAD_MODELS_AT_BOOT": "false",
    }.items():
        os.environ.setdefault(key, value)
    install_native_pipeline()
    from docling_serve.__main__ import main as docling_serve_main

    sys.argv[0] = "docling-serve"
    docling_serve_main()


if __name__ == "__main__":
    main()
