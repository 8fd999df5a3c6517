"""Local files a component may read or write: lfx's own restriction, with the run's folders as its roots.

lfx 1.13 confines the paths its file components take (File, Directory, CSV/JSON to Data, Docling, Save
File, ...) when ``restrict_local_file_access`` is on (``LANGFLOW_RESTRICT_LOCAL_FILE_ACCESS``, default
on): ``lfx.utils.file_path_security.enforce_local_file_access`` resolves the path (symlinks followed)
and requires it inside the roots that ``_scope_roots`` gives, the executing user's or flow's folder of
its storage dir; its own secret files there stay denied. We keep that check and its setting, and only
widen the roots while a run's components build: the drop location, the run's own files (its ``files``,
paths its tweaks name, the partition's document), the IO storage folder and lfx's storage dir (and the
same roots for the Directory component's own second check, ``directory_component_allowed_roots``). A
path the export itself names elsewhere (``/etc/passwd``, ``~/.aws/credentials``) is refused by lfx.

Roots are granted per process, counted per run in flight (a batch builds documents in threads, which do
not share context variables); an operator who sets LANGFLOW_RESTRICT_LOCAL_FILE_ACCESS=false lifts the
check, as in lfx. Code that opens files itself is not confined: that is what the trust policy is for
(runtime/trust.py).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_LOCK = threading.Lock()
_GRANTS: Counter[Path] = Counter()


def granted() -> tuple[Path, ...]:
    with _LOCK:
        return tuple(_GRANTS)


@contextlib.contextmanager
def allowed_files(paths: Iterable[str | Path]) -> Iterator[None]:
    """Let components of this process reach ``paths`` (files or folders, resolved) while inside."""
    roots = [Path(p).expanduser().resolve() for p in paths if str(p)]
    with _LOCK:
        _GRANTS.update(roots)
        _sync_directory_roots()
    try:
        yield
    finally:
        with _LOCK:
            _GRANTS.subtract(roots)
            for root in [r for r, n in _GRANTS.items() if n <= 0]:
                del _GRANTS[root]
            _sync_directory_roots()


_DIRECTORY_ROOTS: list[list[str]] = []  # the operator's directory_component_allowed_roots, once read


def _sync_directory_roots() -> None:
    """lfx's Directory component checks its path a second time, against the working directory and the
    setting ``directory_component_allowed_roots``: the granted roots join the operator's there too."""
    try:
        from lfx.services.deps import get_settings_service

        service = get_settings_service()
    except Exception:  # noqa: BLE001 - no lfx settings: nothing to widen (its checks fail closed)
        return
    if service is None:
        return
    settings = service.settings
    if not _DIRECTORY_ROOTS:
        _DIRECTORY_ROOTS.append(list(getattr(settings, "directory_component_allowed_roots", []) or []))
    settings.directory_component_allowed_roots = [*_DIRECTORY_ROOTS[0], *(str(r) for r in _GRANTS)]


@functools.cache
def install() -> bool:
    """Put the granted roots beside lfx's own (once per process); False if lfx's hook is not there, in
    which case lfx's check stands unchanged (paths outside its storage dir are refused)."""
    try:
        from lfx.utils import file_path_security as fps
    except ImportError:
        return False
    original = getattr(fps, "_scope_roots", None)
    if not callable(original):
        log.warning("lfx has no _scope_roots: local files are confined to lfx's storage dir")
        return False

    def scope_roots(
        data_dir: Path, scope_ids: Iterable[object] | None, *, allow_storage_root: bool = False
    ) -> tuple[Path, ...]:
        extra = granted()
        if not extra:
            return tuple(original(data_dir, scope_ids, allow_storage_root=allow_storage_root))
        # In a run: lfx's storage dir is one of the roots (its secret files stay denied by lfx).
        return (*original(data_dir, scope_ids, allow_storage_root=True), *extra)

    scope_roots.__wrapped__ = original  # type: ignore[attr-defined]
    fps._scope_roots = scope_roots
    return True


def is_local(location: str) -> bool:
    return "://" not in location or location.startswith("file://")


def local_path(location: str) -> str:
    return location.removeprefix("file://")


_PATH_FIELD = re.compile(r"(^|_)(paths?|files?|dir|directory|folder)$", re.IGNORECASE)


def tweak_paths(tweaks: Mapping[str, Any]) -> list[str]:
    """Existing local paths that tweaks give to path fields (``path``, ``file_path``, ``directory``, ...):
    the run's own files. Other fields are not paths, whatever their text ("." as a separator)."""
    found: list[str] = []
    for fields in tweaks.values():
        if isinstance(fields, Mapping):
            for name, value in fields.items():
                if isinstance(name, str) and _PATH_FIELD.search(name):
                    found.extend(_existing(value))
    return found


def _existing(value: Any) -> list[str]:
    if isinstance(value, list | tuple):
        return [p for item in value for p in _existing(item)]
    if not isinstance(value, str) or not value or len(value) > 4096 or "\n" in value:
        return []
    with contextlib.suppress(OSError, ValueError):
        path = Path(value).expanduser().resolve()
        if path.exists() and path != Path(path.anchor):  # never the whole filesystem
            return [value]
    return []
