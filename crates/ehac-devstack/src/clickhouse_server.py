"""Serves ClickHouse 26.9 over HTTP and the native protocol on loopback, from the chdb-core wheel.

The wheel holds ClickHouse's LocalServer with the real HTTP and TCP handlers but no server entry
point: one query, run in process, starts the listeners and then sleeps for as long as the
server should live. The process ends on SIGTERM or SIGKILL; MergeTree data is on disk by then.

Usage: python3 clickhouse_server.py DIR   (DIR holds config.xml and users.xml and is the data path)

Written by crates/ehac-devstack (modern.rs) into the server's directory at every start.
"""
import importlib.util
import os
import sys

server_dir = os.path.abspath(sys.argv[1])
spec = importlib.util.find_spec("chdb")
if spec is None:
    sys.exit("chdb-core is not installed: python3 -m pip install chdb-core==26.9.0")
package = os.path.dirname(spec.origin)
# The extension itself, not `import chdb`: the package starts an embedded session of its own on
# import, after which the LocalServer below cannot start ("EventNotifier is initialized twice").
os.chdir(package)
sys.path.insert(0, package)
import _chdb  # noqa: E402

# The LocalServer reads config.xml from the working directory.
os.chdir(server_dir)
# This session runs as `default`, which users.xml lets start listeners and read system.numbers
# and nothing else. sleepEachRow over an endless table keeps the listeners up until a signal.
result = _chdb.query(
    "SYSTEM START LISTEN HTTP; SYSTEM START LISTEN TCP; "
    "SELECT sleepEachRow(1) FROM system.numbers SETTINGS max_block_size = 1 FORMAT Null",
    # The format given here becomes every HTTP query's default: a real server's is TabSeparated.
    "TabSeparated",
    path=server_dir,
)
if result.has_error():
    sys.exit(f"ClickHouse stopped: {result.error_message()}")
