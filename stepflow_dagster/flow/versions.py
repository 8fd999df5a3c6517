"""Langflow version strings ordered as versions ("1.10.0" is newer than "1.9.0"), with the stdlib only.

Enough of PEP 440 for the versions exports carry (``1.6.3``, ``1.6.3.dev1``, ``1.7.0rc1``, ``1.5.0.post2``):
a dev release comes before its pre-releases, which come before the release, which comes before its
post-releases; trailing zeros do not count (``1.6`` == ``1.6.0``). Text that is no version sorts first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_VERSION = re.compile(
    r"^\s*v?(?P<release>\d+(?:\.\d+)*)"
    r"(?:[-_.]?(?P<pre>a|alpha|b|beta|rc|c)[-_.]?(?P<pre_n>\d*))?"
    r"(?:[-_.]?post[-_.]?(?P<post>\d*))?"
    r"(?:[-_.]?dev[-_.]?(?P<dev>\d*))?"
    r"(?:\+.*)?\s*$",
    re.IGNORECASE,
)
_PRE_RANK = {"a": 0, "alpha": 0, "b": 1, "beta": 1, "c": 2, "rc": 2}
VersionKey = tuple[int, tuple[int, ...], tuple[int, int], int, tuple[int, int]]


def version_key(text: str) -> VersionKey:
    """A sort key: compare two version strings by their keys."""
    m = _VERSION.match(text)
    if m is None:
        return (0, (), (0, 0), 0, (0, 0))
    release = tuple(int(p) for p in m["release"].split("."))
    while len(release) > 1 and release[-1] == 0:
        release = release[:-1]
    pre_name, post, dev = m["pre"], m["post"], m["dev"]
    # No pre-release sorts after every pre-release; a bare dev release (1.6.3.dev1) before them all.
    if pre_name:
        pre = (_PRE_RANK[pre_name.lower()], int(m["pre_n"] or 0))
    elif dev is not None and post is None:
        pre = (-1, 0)
    else:
        pre = (3, 0)
    post_n = int(post or 0) + 1 if post is not None else 0
    dev_key = (0, int(dev or 0)) if dev is not None else (1, 0)
    return (1, release, pre, post_n, dev_key)


def newest(versions: Iterable[str]) -> str | None:
    """The newest of ``versions`` (None for none); of equal versions, the first."""
    best: str | None = None
    for v in versions:
        if best is None or version_key(v) > version_key(best):
            best = v
    return best
