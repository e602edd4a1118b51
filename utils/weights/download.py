"""Fetch one file over HTTP(S) without ever leaving a partial file behind.

``fetch(url, path, max_bytes, verify)`` streams the body into a temporary
file beside ``path`` (``.NAME.XXXXXXXX.part``, in the same folder so that
the final rename is atomic), hashing and counting as it goes. It refuses

* a body longer than ``max_bytes``, whether the server announces it
  (``Content-Length``, refused before anything is read) or just sends it
  (refused as soon as the count passes the bound);
* a body shorter than its ``Content-Length`` (a truncated download);
* any status but success (after redirects), a refused or failed
  connection, and a read that waits longer than ``timeout`` seconds.

Only then does ``verify(tmp, digests)`` see the whole file (and may refuse
it), and only after that is it renamed to ``path`` (``os.replace``).
Whatever fails, Ctrl-C included, the temporary file is removed.

Only ``http`` and ``https`` are opened, also by a redirect: the opener has
no ``file:``, ``ftp:`` or ``data:`` handler, so a URL can never read a
local file.

Progress goes to ``stream`` (default: stdout): on a terminal one bar
redrawn in place, otherwise a plain line at every tenth of the file
(every 16 MiB when the server does not say its size), so that a log
redirected to a file holds no control characters.
"""
import hashlib
import http.client
import os
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

CHUNK = 1 << 20
MIB = float(1 << 20)
UNKNOWN_SIZE_STEP = 16 << 20  # plain progress lines of a size-less body
TIMEOUT = 60  # seconds one connect or read may wait


class DownloadError(ValueError):
    """A download that failed or was refused. The message says why only;
    the caller says what the file was for and what to do instead."""


def fetch(url, path, max_bytes, verify=None, stream=None, timeout=TIMEOUT):
    """Download ``url`` to ``path``, atomically.

    Args:
        url (str): an ``http://`` or ``https://`` URL.
        path (str): the file to create (its folder is created).
        max_bytes (int): the most bytes the file may have.
        verify (callable): ``verify(tmp_path, digests)`` on the complete
            temporary file before the rename; whatever it raises refuses
            the file (and is raised as it is).
        stream: where progress goes (default ``sys.stdout``).

    Returns:
        dict: hex digests of the file, ``{'md5': ..., 'sha256': ...}``.
    """
    if urllib.parse.urlsplit(url).scheme not in ('http', 'https'):
        raise DownloadError('not an http:// or https:// URL')
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix='.{}.'.format(os.path.basename(path)), suffix='.part',
            dir=folder)
    except OSError as e:
        raise DownloadError('cannot write in {}: {}'.format(
            folder, e.strerror or e)) from None
    try:
        with os.fdopen(fd, 'wb') as out:
            digests = _download(url, out, max_bytes,
                                stream or sys.stdout, timeout)
        if verify is not None:
            verify(tmp, digests)
        os.replace(tmp, path)
    except BaseException:  # Ctrl-C too: never a partial file
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return digests


def file_digests(path):
    """``{'md5': ..., 'sha256': ...}`` hex digests of a file, as ``fetch``
    returns them."""
    md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(CHUNK), b''):
            md5.update(chunk)
            sha256.update(chunk)
    return {'md5': md5.hexdigest(), 'sha256': sha256.hexdigest()}


def _opener():
    """urllib with the http(s) handlers only (proxies from the
    environment are honoured)."""
    opener = urllib.request.OpenerDirector()
    for handler in (urllib.request.ProxyHandler(),
                    urllib.request.HTTPHandler(),
                    urllib.request.HTTPSHandler(),
                    urllib.request.HTTPDefaultErrorHandler(),
                    urllib.request.HTTPRedirectHandler(),
                    urllib.request.HTTPErrorProcessor()):
        opener.add_handler(handler)
    return opener


def _download(url, out, max_bytes, stream, timeout):
    try:
        response = _opener().open(url, timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()
        raise DownloadError('HTTP {} {}'.format(e.code, e.reason)) from None
    except urllib.error.URLError as e:  # refused, no route, no DNS name
        raise DownloadError(_reason(e.reason)) from None
    except (OSError, http.client.HTTPException) as e:  # timeout, reset
        raise DownloadError(_reason(e)) from None
    with response:
        size = _announced_size(response, max_bytes)
        return _copy(response, out, size, max_bytes,
                     Progress(size, stream))


def _announced_size(response, max_bytes):
    """The body's ``Content-Length`` (None when absent), refused above
    ``max_bytes`` before anything is read."""
    text = response.headers.get('Content-Length')
    if text is None:
        return None
    if not text.strip().isdigit():
        raise DownloadError('Content-Length {!r} is not a size'.format(
            text[:40]))
    size = int(text)
    if size > max_bytes:
        raise DownloadError(
            'the server announces {} bytes, more than the {} bytes this '
            'file may have'.format(size, max_bytes))
    return size


def _copy(response, out, size, max_bytes, progress):
    """Body -> ``out``; (md5, sha256) hex digests of what was written."""
    md5 = hashlib.md5(usedforsecurity=False)  # detectron2's file names
    sha256 = hashlib.sha256()
    done = 0
    while True:
        try:
            chunk = response.read(CHUNK)
        except http.client.IncompleteRead as e:  # a chunked body cut
            raise DownloadError('truncated: the connection closed after {} '
                                'bytes'.format(done + len(e.partial))) \
                from None
        except (OSError, http.client.HTTPException) as e:
            raise DownloadError('the connection failed after {} bytes '
                                '({})'.format(done, _reason(e))) from None
        if not chunk:
            break
        done += len(chunk)
        if done > max_bytes:
            raise DownloadError('the server sent more than the {} bytes '
                                'this file may have'.format(max_bytes))
        md5.update(chunk)
        sha256.update(chunk)
        try:
            out.write(chunk)
        except OSError as e:
            raise DownloadError('cannot write {}: {}'.format(
                out.name, e.strerror or e)) from None
        progress.update(done)
    if size is not None and done != size:
        raise DownloadError('truncated: the connection closed after {} of '
                            'the {} bytes announced'.format(done, size))
    progress.finish(done)
    return {'md5': md5.hexdigest(), 'sha256': sha256.hexdigest()}


def _reason(error):
    """A short reason of a socket or HTTP error, on one line."""
    text = getattr(error, 'strerror', None) or str(error) or \
        type(error).__name__
    return ' '.join(str(text).split())


class Progress:
    """Download progress on ``stream``: a bar redrawn in place on a
    terminal (at most every 0.2 s), else plain lines (see the module
    docstring)."""

    def __init__(self, size, stream):
        self.size, self.stream = size, stream
        self.tty = getattr(stream, 'isatty', lambda: False)()
        self.step = (size // 10 if size else UNKNOWN_SIZE_STEP) or 1
        self.next_line, self.last_draw = self.step, 0.

    def update(self, done):
        if self.tty:
            if time.monotonic() - self.last_draw >= 0.2:
                self._draw(done)
        elif done >= self.next_line:
            self._line(done)
            while self.next_line <= done:
                self.next_line += self.step

    def finish(self, done):
        if self.tty:
            self._draw(done)
            self.stream.write('\n')
        else:
            self._line(done)
        self.stream.flush()

    def _line(self, done):
        self.stream.write('  {}\n'.format(self._amount(done)))
        self.stream.flush()

    def _draw(self, done):
        self.last_draw = time.monotonic()
        bar = ''
        if self.size:
            full = int(30 * done / self.size)
            bar = '|{}{}| '.format('#' * full, ' ' * (30 - full))
        self.stream.write('\r  {}{}'.format(bar, self._amount(done)))
        self.stream.flush()

    def _amount(self, done):
        if not self.size:
            return '{:.1f} MiB'.format(done / MIB)
        return '{:3d}% {:.1f} of {:.1f} MiB'.format(
            int(100 * done / self.size), done / MIB, self.size / MIB)
