#!/usr/bin/env python3
"""Open N idle HTTP/1.1 keep-alive connections to a server and hold them open.

Used by bench/run.sh to measure switchyard's resident memory per idle client connection.
Each connection sends one `GET /`, reads the whole response, then stays open and idle.
Connections are opened in batches (all requests of a batch in flight at once), so 10,000
connections take a few seconds on loopback.

Protocol with the caller: once every connection is open, a JSON summary is written to the
--ready file (atomically); the script then holds the connections until the --release file
exists (or --hold-max seconds pass), checks how many are still open, prints one JSON line on
stdout and exits (closing everything).
"""

import argparse
import json
import os
import resource
import socket
import sys
import time


def raise_nofile(wanted):
    """Raise the soft RLIMIT_NOFILE towards `wanted`; return the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def read_response(sock):
    """Read one HTTP/1.1 response (Content-Length or chunked); return its status code."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response head")
        buf += chunk
        if len(buf) > 1 << 20:
            raise ValueError("response head too large")
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while not body.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed inside a chunked body")
            body += chunk
    elif length is not None:
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed inside the body")
            body += chunk
    return status


def still_open(sock):
    """True if the peer has not closed the connection (nothing readable, no EOF)."""
    try:
        sock.setblocking(False)
        data = sock.recv(1, socket.MSG_PEEK)
        return bool(data)  # unexpected bytes: open, but the server sent something
    except BlockingIOError:
        return True
    except OSError:
        return False


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--conns", type=int, required=True)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--ready", required=True, help="file written when all connections are open")
    ap.add_argument("--release", required=True, help="file whose creation ends the hold")
    ap.add_argument("--hold-max", type=float, default=60.0)
    ap.add_argument("--timeout", type=float, default=10.0, help="per-socket I/O timeout")
    args = ap.parse_args()

    wanted = args.conns
    limit = raise_nofile(wanted + 64)
    conns = min(wanted, max(0, limit - 64))
    if conns < wanted:
        print(f"idle_conns: RLIMIT_NOFILE is {limit}: opening {conns} connections, not {wanted}",
              file=sys.stderr)

    request = (f"GET / HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n"
               "User-Agent: switchyard-bench-idle\r\nAccept: */*\r\n\r\n").encode()
    errors = {}
    non_200 = 0
    held = []
    started = time.monotonic()

    def fail(kind, sock):
        errors[kind] = errors.get(kind, 0) + 1
        sock.close()

    for first in range(0, conns, args.batch):
        batch = []
        for _ in range(min(args.batch, conns - first)):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.settimeout(args.timeout)
            try:
                sock.connect((args.host, args.port))
                sock.sendall(request)
            except OSError as exc:
                fail("connect_or_send:" + type(exc).__name__, sock)
                continue
            batch.append(sock)
        for sock in batch:
            try:
                status = read_response(sock)
            except (OSError, ValueError, IndexError) as exc:
                fail("response:" + type(exc).__name__, sock)
                continue
            if status != 200:
                non_200 += 1
            held.append(sock)

    open_seconds = time.monotonic() - started
    summary = {
        "requested": wanted,
        "attempted": conns,
        "opened": len(held),
        "non_200": non_200,
        "errors": errors,
        "open_seconds": round(open_seconds, 3),
    }
    tmp = args.ready + ".tmp"
    with open(tmp, "w") as f:
        json.dump(summary, f)
    os.replace(tmp, args.ready)

    hold_start = time.monotonic()
    while not os.path.exists(args.release):
        if time.monotonic() - hold_start > args.hold_max:
            summary["hold_max_reached"] = True
            break
        time.sleep(0.05)
    summary["held_seconds"] = round(time.monotonic() - hold_start, 3)
    summary["still_open"] = sum(1 for s in held if still_open(s))
    print(json.dumps(summary), flush=True)
    for sock in held:
        sock.close()
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(main())
