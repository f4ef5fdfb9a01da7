"""The Chroma client: an embedded ``PersistentClient`` or ``HttpClient`` for a ``chroma run`` server."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cera_rag.store.errors import StoreError


# ---------------------------------------------------------------------------------------- client
def _chromadb() -> Any:
    try:
        import chromadb
    except ImportError:  # pragma: no cover - depends on the environment
        raise StoreError("chromadb is not installed; install it with `pip install 'cera-rag[chroma]'`.") from None
    return chromadb


def default_store_path() -> Path:
    """``$CERA_CHROMA_DIR`` if set, else ``cache_dir()/chroma``."""
    from cera_rag.paths import cache_dir

    env = os.environ.get("CERA_CHROMA_DIR")
    return Path(env).expanduser() if env else cache_dir() / "chroma"


def get_client(
    path: str | os.PathLike[str] | None = None,
    host: str | None = None,
    port: int | None = None,
    *,
    ssl: bool = False,
    headers: Mapping[str, str] | None = None,
    tenant: str | None = None,
    database: str | None = None,
) -> Any:
    """A Chroma client: embedded ``PersistentClient`` at ``path``, or ``HttpClient`` when host/port are given.

    Args:
        path: Folder of the embedded store (created if needed); default ``default_store_path()``.
        host: Host of a ``chroma run`` server (e.g. ``127.0.0.1``); selects the HTTP client.
        port: Port of that server (default 8000).
        ssl: Talk HTTPS to the server.
        headers: HTTP headers sent with every request (e.g. ``{"Authorization": "Bearer ..."}`` or
            ``{"X-Chroma-Token": ...}`` for a server with token auth).
        tenant: Chroma tenant (default ``default_tenant``).
        database: Chroma database (default ``default_database``).

    Raises:
        StoreError: If both a path and a host are given, or the server cannot be reached.
    """
    chromadb = _chromadb()
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False)
    scope: dict[str, str] = {}
    if tenant is not None:
        scope["tenant"] = tenant
    if database is not None:
        scope["database"] = database
    if host is not None or port is not None:
        if path is not None:
            raise StoreError("Give either a store path (embedded Chroma) or host/port (a Chroma server), not both.")
        host, port = host or "127.0.0.1", int(port or 8000)
        try:
            return chromadb.HttpClient(
                host=host, port=port, ssl=ssl, headers=dict(headers) if headers else None, settings=settings, **scope
            )
        except Exception as exc:  # chromadb raises plain ValueError/ConnectionError subclasses
            scheme = "https" if ssl else "http"
            raise StoreError(
                f"Cannot reach a Chroma server at {scheme}://{host}:{port} ({exc}); start one with "
                f"`chroma run --host {host} --port {port} --path DIR`, or check its tenant, database and auth headers."
            ) from exc
    if ssl or headers:
        raise StoreError("ssl and headers apply to a Chroma server (host/port), not to an embedded store path.")
    folder = Path(path).expanduser() if path is not None else default_store_path()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        return chromadb.PersistentClient(path=str(folder), settings=settings, **scope)
    except Exception as exc:  # an unknown tenant or database
        if not scope:
            raise
        raise StoreError(f"Cannot open {folder} with {scope} ({exc}); create the tenant/database first.") from exc


def client_of(collection: Any) -> Any:
    """The Chroma client (``ClientAPI``) a collection belongs to, for APIs that take a client and a name.

    A ``Collection`` keeps only the server API it was fetched through; Chroma's own
    ``Client.from_system`` rebuilds the client over that system, in the collection's tenant and database.
    """
    _chromadb()
    from chromadb.api.client import Client

    system = getattr(getattr(collection, "_client", None), "_system", None)
    if system is None:
        raise StoreError(
            f"Cannot tell which Chroma client {collection!r} belongs to; pass the client (client=...) with the "
            "collection name instead of the collection."
        )
    return Client.from_system(system, tenant=collection.tenant, database=collection.database)
