"""Run the API server until SIGTERM or Ctrl-C, then drain: stop accepting, let in-flight
requests finish (at most ``serve.shutdown_grace_s``), cancel what is left, close the tools
and the policy."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepeyes_cli.errors import InputError
from deepeyes_cli.httpd import is_loopback, listen

if TYPE_CHECKING:
    from deepeyes_cli.policy.base import Policy


def check_exposure(host: str, api_key: str | None) -> None:
    """Off loopback, the server runs code and spends search budget for whoever reaches it:
    an API key is required there."""
    if not api_key and not is_loopback(host):
        raise InputError(f"serving on {host} needs an API key: anyone who can reach the port could run code "
                         "in the sandbox and spend the search budget",
                         hint="pass --api-key (or set DEEPEYES_API_KEY / serve.api_key), or keep --host 127.0.0.1")


def serve(recipe: Any, policy: Policy, *, recipe_digest: str | None = None, save_path: Path | None = None,
          on_ready: Callable[[str], None] | None = None, log_level: str = "warning") -> None:
    """Serve ``recipe.serve.host:port`` (port 0: any free one; ``on_ready(url)`` once the
    tools are open and the socket listens)."""
    import uvicorn

    from deepeyes_cli.serve.app import create_app
    from deepeyes_cli.serve.service import AgentService

    cfg = recipe.serve
    check_exposure(cfg.host, cfg.api_key)
    try:
        sock, url = listen(cfg.host, cfg.port)
    except OSError as e:
        raise InputError(f"cannot listen on {cfg.host}:{cfg.port}: {e.strerror}",
                         hint="choose another --port (0 picks a free one)") from e
    service = AgentService(recipe, policy, recipe_digest=recipe_digest, save_path=save_path)
    app = create_app(service)

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            service.draining = True  # new requests get 503 while the old ones finish
            super().handle_exit(sig, frame)

        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started and on_ready is not None:
                on_ready(url)

    config = uvicorn.Config(app, log_level=log_level, access_log=cfg.access_log, lifespan="on",
                            timeout_keep_alive=75, timeout_graceful_shutdown=int(cfg.shutdown_grace_s))
    server = Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    if service.start_error is not None:
        raise service.start_error
    if not server.started:
        raise InputError("the server did not start (see the log above)", hint="run with --debug for details")
