"""The HTTP plumbing the REST protocol fakes share (tests/kfp_api.py, gcs_api.py, bigquery_api.py):
a threaded server on 127.0.0.1 handing each request to the fake's `_handle(handler, method)`."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LocalHttpService:
    """Call `_serve` from `__post_init__`; `with fake:` serves, leaving the block stops it."""

    def _serve(self, methods: tuple[str, ...] = ("GET", "POST"), keep_alive: bool = False) -> None:
        api = self

        class Handler(BaseHTTPRequestHandler):
            # keep-alive where the real client pools connections (google-cloud-* over requests)
            protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

            def log_message(self, *args):
                pass

        for method in methods:
            setattr(Handler, f"do_{method}", lambda handler, method=method: api._handle(handler, method))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
