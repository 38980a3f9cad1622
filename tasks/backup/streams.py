"""Byte streams for backups: chunks that flow without being copied, hashing on the way,
and threads that keep the engine, the disk and the checksums busy at the same time.

A backup reads the engine's tar, checks and hashes every file, and writes and hashes the
archive; a restore reads and hashes the archive file twice and sends it. `WriteBehind`
writes and hashes in a thread, `Prefetch` reads (and hashes) a file ahead in one, each
through a small bounded queue, so memory stays a few chunks whatever the volume's size;
data moves as memoryview slices of the chunks it arrived in. Hashing and file I/O
release the GIL, so those threads really overlap with the main one. (Reading the engine's
socket ahead in a thread did not pay: its 32 KiB pieces keep that thread in Python code,
contending for the GIL; measured slower on two cores.)
"""
import hashlib
import os
import queue
import threading
import zlib

CHUNK = 1 << 20
DEPTH = 2  # batches (about CHUNK bytes each) in flight per queue: bounded memory
IOV_MAX = 1024  # most buffers one writev(2) takes on Linux
_DONE = object()


class StreamEnd(Exception):
    """The stream ended before the bytes a reader needed."""


class Chunks:
    """Reads from an iterator of byte chunks: `read_some` hands out slices of the chunks
    themselves (no copy), `read_exact` gathers small exact pieces such as headers."""

    def __init__(self, chunks):
        self.chunks = iter(chunks)
        self.current = memoryview(b"")

    def _fill(self) -> bool:
        while not self.current:
            try:
                self.current = memoryview(next(self.chunks))
            except StopIteration:
                return False
        return True

    def read_some(self, n: int):
        """Up to n bytes (at least 1), or b"" at the end."""
        if not self._fill():
            return b""
        piece, self.current = self.current[:n], self.current[n:]
        return piece

    def read_exact(self, n: int) -> bytes:
        parts, got = [], 0
        while got < n:
            piece = self.read_some(n - got)
            if not piece:
                raise StreamEnd(got)
            parts.append(piece)
            got += len(piece)
        return b"".join(parts)

    def peek(self, n: int) -> bytes:
        self._fill()
        return bytes(self.current[:n])

    def close(self) -> None:
        close = getattr(self.chunks, "close", None)
        if close:
            close()


class Prefetch:
    """An iterator over chunks that a thread pulls ahead from another iterator, handing
    them over about CHUNK bytes at a time (a queue operation per small piece would cost
    more than it saves). `on_chunk(chunk)` runs in that thread for each chunk (hashing,
    progress)."""

    def __init__(self, chunks, on_chunk=None, depth: int = DEPTH):
        self.queue = queue.Queue(depth)
        self.stop = threading.Event()
        self.finished = False
        self.current = iter(())
        self.thread = threading.Thread(target=self._pull, args=(chunks, on_chunk), daemon=True)
        self.thread.start()

    def _pull(self, chunks, on_chunk) -> None:
        last = _DONE
        batch, batched = [], 0
        try:
            for chunk in chunks:
                if on_chunk:
                    on_chunk(chunk)
                batch.append(chunk)
                batched += len(chunk)
                if batched >= CHUNK:
                    if not self._put(batch):
                        return
                    batch, batched = [], 0
        except BaseException as error:  # handed to the reader, raised there
            last = error
        finally:
            close = getattr(chunks, "close", None)
            if close:
                close()
            if batch and last is _DONE:
                self._put(batch)
            self._put(last)

    def _put(self, item) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self):
        return self

    def __next__(self):
        while True:
            for chunk in self.current:
                return chunk
            if self.finished:
                raise StopIteration
            item = self.queue.get()
            if item is _DONE:
                self.finished = True
                raise StopIteration
            if isinstance(item, BaseException):
                self.finished = True
                raise item
            self.current = iter(item)

    def close(self) -> None:
        """Stop the thread at its next chunk; it closes its source."""
        self.stop.set()


def file_chunks(raw, size: int = CHUNK):
    while True:
        chunk = raw.read(size)
        if not chunk:
            return
        yield chunk


def _writev(fd: int, items: list) -> None:
    """Write every piece, in order, a few hundred per system call."""
    items = [item for item in items if len(item)]
    i = 0
    while i < len(items):
        written = os.writev(fd, items[i:i + IOV_MAX])
        if not written:
            raise OSError(f"writev wrote nothing to descriptor {fd}")
        while written:
            size = len(items[i])
            if written >= size:
                written -= size
                i += 1
            else:
                items[i] = memoryview(items[i])[written:]
                written = 0


class WriteBehind:
    """A sink for a file descriptor whose writes and sha256 happen in a thread, in order;
    close() waits for them and raises what the thread met. Pieces written must not be
    changed afterwards (bytes, or slices of chunks nobody reuses)."""

    def __init__(self, fd: int, depth: int = DEPTH):
        self.fd = fd
        self.digest = hashlib.sha256()
        self.count = 0
        self.error = None
        self.queue = queue.Queue(depth)
        self.batch, self.batched = [], 0
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        while True:
            items = self.queue.get()
            if items is _DONE:
                return
            if self.error is None:
                try:
                    for item in items:
                        self.digest.update(item)
                    _writev(self.fd, items)
                except BaseException as error:
                    self.error = error

    def write(self, data) -> int:
        if self.error is not None:
            raise self.error
        n = len(data)
        if n:
            self.count += n
            self.batch.append(data)
            self.batched += n
            if self.batched >= CHUNK:
                self._send()
        return n

    def _send(self) -> None:
        if self.batch:
            self.queue.put(self.batch)
            self.batch, self.batched = [], 0

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self._send()
        self.queue.put(_DONE)
        self.thread.join()
        if self.error is not None:
            raise self.error

    def abort(self) -> None:
        """Let the thread end without writing what is still queued."""
        self.error = self.error or StreamEnd("aborted")
        self.queue.put(_DONE)


class CompressedEnd(Exception):
    """Bytes after the end of the gzip data."""


def gunzip(chunks, limit: int = CHUNK):
    """Decompress a gzip stream chunk by chunk, never more than `limit` bytes at once (a
    small archive cannot blow up in memory). Raises zlib.error for damaged data, StreamEnd
    when it is cut short, CompressedEnd for anything after its end."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    for chunk in chunks:
        data = chunk
        while data:
            if inflater.eof:
                raise CompressedEnd()
            out = inflater.decompress(data, limit)
            if out:
                yield out
            data = inflater.unconsumed_tail
        if inflater.eof and inflater.unused_data:
            raise CompressedEnd()
    if not inflater.eof:
        raise StreamEnd(0)


def open_chunks(chunks) -> Chunks:
    """Chunks of an archive, gunzipped when they start with gzip's magic bytes."""
    source = Chunks(chunks)
    if source.peek(2) == b"\x1f\x8b":
        return Chunks(gunzip(_rest(source)))
    return source


def _rest(source: Chunks):
    while True:
        piece = source.read_some(CHUNK)
        if not piece:
            return
        yield piece


def coalesce(pieces, size: int = 256 * 1024):
    """Join small pieces into blocks of about `size` bytes (big pieces pass as they are),
    so an upload sends few large writes instead of one per header."""
    batch, batched = [], 0
    for piece in pieces:
        if len(piece) >= size and not batch:
            yield piece
            continue
        batch.append(piece)
        batched += len(piece)
        if batched >= size:
            yield b"".join(batch)
            batch, batched = [], 0
    if batch:
        yield b"".join(batch)
