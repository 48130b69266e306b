#!/usr/bin/env python3
"""Hold many slow HTTP clients open against a loopback address (slowloris).

  slow_http_clients.py HOST PORT COUNT MAX_SECONDS STATUS_FILE STOP_FILE

Opens COUNT TCP connections to HOST:PORT (loopback only), sends each an
unfinished request ("GET /healthz HTTP/1.1", a Host header, no blank line)
and then one more header byte per connection every second, so that an idle
timeout never closes them.  Every second it writes to STATUS_FILE one line
"open N closed M" (M: connections the server closed or refused).  Exits
when STOP_FILE exists or after MAX_SECONDS, whichever comes first, closing
everything.  Bounded in count and time by its arguments.
"""
import errno
import os
import resource
import socket
import sys
import time


def main(host, port, count, max_seconds, status_file, stop_file):
    if not host.startswith("127."):
        sys.exit("loopback addresses only")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = count + 64
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            sys.exit("RLIMIT_NOFILE hard limit %d is below %d" % (hard, need))
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    deadline = time.monotonic() + max_seconds
    socks = []
    closed = 0
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect((host, port))
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: relay\r\nX-Slow: ")
            s.setblocking(False)
            socks.append(s)
        except OSError:
            closed += 1
            s.close()
        if time.monotonic() > deadline:
            break

    def write_status():
        with open(status_file + ".tmp", "w") as f:
            f.write("open %d closed %d\n" % (len(socks), closed))
        os.replace(status_file + ".tmp", status_file)

    while time.monotonic() < deadline and not os.path.exists(stop_file):
        alive = []
        for s in socks:
            try:
                # the server closing (EOF or reset) or answering early ends a client
                data = s.recv(1)
                s.close()
                closed += 1
                continue
            except BlockingIOError:
                pass
            except OSError:
                s.close()
                closed += 1
                continue
            try:
                s.send(b"a")
                alive.append(s)
            except OSError as e:
                if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    alive.append(s)
                else:
                    s.close()
                    closed += 1
        socks = alive
        write_status()
        time.sleep(1)
    for s in socks:
        s.close()


if __name__ == "__main__":
    if len(sys.argv) != 7:
        sys.exit(__doc__)
    h, p, n, t, st, stop = sys.argv[1:]
    main(h, int(p), int(n), float(t), st, stop)
