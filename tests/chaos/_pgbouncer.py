"""A private PgBouncer (transaction pooling) in front of a private cluster, for one test."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.chaos import _cluster, _private, _support

CONFIG = """\
[databases]
* = host=127.0.0.1 port={db_port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {root}/userlist.txt
pool_mode = transaction
max_client_conn = 500
default_pool_size = 20
ignore_startup_parameters = extra_float_digits,options
logfile = {root}/pgbouncer.log
pidfile = {root}/pgbouncer.pid
"""


@contextlib.contextmanager
def pgbouncer(cluster: _cluster.Cluster) -> Iterator[str]:
    """Start PgBouncer in front of ``cluster``; yields its URL prefix (``postgresql://...:port``)."""
    sbin = Path("/usr/sbin/pgbouncer")
    exe = shutil.which("pgbouncer") or (str(sbin) if sbin.exists() else None)
    if exe is None:
        _private.need("pgbouncer is not installed (apt-get install pgbouncer)")
    assert exe is not None
    root = cluster.root / "pgbouncer"
    root.mkdir()
    port = _support.free_port()
    (root / "pgbouncer.ini").write_text(CONFIG.format(db_port=cluster.port, port=port, root=root))
    (root / "userlist.txt").write_text('"postgres" ""\n')
    if cluster.prefix:  # pgbouncer refuses to run as root
        pw = pwd.getpwnam("postgres")
        for p in (root, *root.iterdir()):
            os.chown(p, pw.pw_uid, pw.pw_gid)
    proc = subprocess.Popen([*cluster.prefix, exe, str(root / "pgbouncer.ini")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            if proc.poll() is not None:
                raise AssertionError(f"pgbouncer exited: {(root / 'pgbouncer.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
