"""The default connection limit, derived from the process's file-descriptor limit.

Every connection holds at least one file descriptor, so the limit that matters
is the process's ``RLIMIT_NOFILE``, not a fixed number: a server whose
``max_connections`` exceeds it fails in ``accept(2)`` (``EMFILE``) instead of
answering the client past the limit.
"""

from __future__ import annotations

__all__ = ["fd_limit_connections", "raise_fd_limit"]

# Used where the platform cannot tell its descriptor limit (no `resource` module).
_FALLBACK_CONNECTIONS = 1000
# An unlimited soft limit is still bounded by the kernel (Linux: fs.nr_open).
_UNLIMITED = 1 << 20


def raise_fd_limit() -> int | None:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit where allowed; return the soft limit.

    ``None`` where the platform has no such limit (Windows). A hard limit the
    kernel refuses as a soft one (``RLIM_INFINITY`` on Linux or macOS) leaves the
    soft limit where it was.
    """
    try:
        import resource
    except ImportError:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard and hard != resource.RLIM_INFINITY:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass
        else:
            soft = hard
    return _UNLIMITED if soft == resource.RLIM_INFINITY else int(soft)


def fd_limit_connections(soft_limit: int | None) -> int:
    """The default ``max_connections`` for a process allowed *soft_limit* descriptors.

    The soft limit minus a margin for everything else the process opens
    (listeners, log files, a proxy's backend connections, answers to clients
    past the limit, the interpreter's own files): a tenth of it, at least 100,
    at most half of it; never below 1.
    """
    if soft_limit is None:
        return _FALLBACK_CONNECTIONS
    margin = min(max(100, soft_limit // 10), soft_limit // 2)
    return max(1, soft_limit - margin)
