"""The security headers every response carries, and the looser policy the API docs pages need.

API responses are JSON for programs: nothing in them should be sniffed,
cached, framed, embedded by another origin or allowed to load anything. The
interactive docs (``/docs``, ``/redoc``) are HTML pages that load their
scripts and styles from a CDN, so they get a content security policy that
allows exactly that and nothing more; they stay framed-out and uncached.
"""

from __future__ import annotations

API_POLICY = "default-src 'none'; frame-ancestors 'none'"
DOCS_POLICY = (
    "default-src 'none'; "
    "script-src 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src https://fonts.gstatic.com; "
    "img-src data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
    "connect-src 'self'; "
    "worker-src blob:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})
HSTS = "max-age=31536000"

_COMMON: tuple[tuple[str, str], ...] = (
    ("x-content-type-options", "nosniff"),
    ("cache-control", "no-store"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    ("cross-origin-resource-policy", "same-origin"),
)


def security_headers(path: str, *, tls: bool) -> list[tuple[str, str]]:
    """The headers for a response to ``path``; HSTS only when the broker is served over TLS.

    Browsers ignore HSTS over plain http, and sending it from a broker that
    is not behind TLS would only mislead whoever reads the headers.
    """
    policy = DOCS_POLICY if path in DOCS_PATHS else API_POLICY
    headers = [*_COMMON, ("content-security-policy", policy)]
    if tls:
        headers.append(("strict-transport-security", HSTS))
    return headers
