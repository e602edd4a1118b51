"""A model-zoo stand-in for the download tests: an HTTP server on
127.0.0.1 only, in a thread, that serves what a test puts in ``routes``
and counts the requests. It stops when the ``with`` block ends, and by
itself after ``LIFETIME`` seconds whatever happens; each connection waits
at most ``TIMEOUT`` seconds for the client.

``routes[path]`` (the URL path without the leading '/') is a ``Route``:
the body, and the ``Content-Length`` to announce (default its length; a
larger one makes a truncated download, None sends none and closes the
connection after the body). Any other path is a 404.
"""
import dataclasses
import http.server
import socket
import threading

LIFETIME = 300
TIMEOUT = 10
SAME = object()  # Route.length: the body's own length


@dataclasses.dataclass
class Route:
    body: bytes
    length: object = SAME


class _Handler(http.server.BaseHTTPRequestHandler):
    timeout = TIMEOUT
    protocol_version = 'HTTP/1.1'

    def do_GET(self):
        server = self.server
        path = self.path.lstrip('/')
        server.requests.append(path)
        route = server.routes.get(path)
        if route is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header('Content-Type', 'application/octet-stream')
        length = len(route.body) if route.length is SAME else route.length
        if length is not None:
            self.send_header('Content-Length', str(length))
        self.send_header('Connection', 'close')
        self.end_headers()
        try:
            self.wfile.write(route.body)
        except OSError:  # the client refused the rest: that is the test
            pass
        self.close_connection = True

    def log_message(self, *args):  # quiet
        pass


class ZooServer:
    """``with ZooServer() as server:`` ``server.url`` is the base URL,
    ``server.routes`` what it serves, ``server.requests`` the paths
    asked for."""

    def __enter__(self):
        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0),
                                                     _Handler)
        self.httpd.daemon_threads = True
        self.httpd.routes, self.httpd.requests = {}, []
        self.routes, self.requests = self.httpd.routes, self.httpd.requests
        self.url = 'http://127.0.0.1:{}/'.format(self.httpd.server_port)
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       daemon=True)
        self.thread.start()
        self.watchdog = threading.Timer(LIFETIME, self.httpd.shutdown)
        self.watchdog.daemon = True
        self.watchdog.start()
        return self

    def __exit__(self, *exc):
        self.watchdog.cancel()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(TIMEOUT)


def closed_port_url():
    """A base URL on 127.0.0.1 where nothing listens: connection refused,
    as offline."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    return 'http://127.0.0.1:{}/'.format(port)
