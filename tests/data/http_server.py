"""A static file server for the remote-shard tests: Python's ``http.server`` on 127.0.0.1.

    python tests/data/http_server.py DIR PORT [--drop-after BYTES --drops N]

Serves ``DIR`` (GET and HEAD with Content-Length, no range requests, as ``python -m http.server``). With
``--drop-after``, the first ``N`` GETs of each ``.tar`` send the full Content-Length header, then only
``BYTES`` bytes of the body and close the connection: a connection dropped mid-object (``N < 0``: always).
"""
from __future__ import annotations

import argparse
import functools
import http.server
import os
import shutil


class Handler(http.server.SimpleHTTPRequestHandler):
    drop_after: int | None = None
    drops: int = 0
    served: dict[str, int] = {}

    def log_message(self, *args) -> None:  # quiet
        pass

    def copyfile(self, source, outputfile) -> None:
        n = self.served.get(self.path, 0)
        self.served[self.path] = n + 1
        if self.drop_after is not None and self.path.endswith(".tar") and (self.drops < 0 or n < self.drops):
            outputfile.write(source.read(self.drop_after))
            outputfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        shutil.copyfileobj(source, outputfile)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("port", type=int)
    ap.add_argument("--drop-after", type=int, default=None)
    ap.add_argument("--drops", type=int, default=0)
    a = ap.parse_args()
    Handler.drop_after, Handler.drops = a.drop_after, a.drops
    server = http.server.ThreadingHTTPServer(("127.0.0.1", a.port),
                                             functools.partial(Handler, directory=os.path.abspath(a.dir)))
    server.daemon_threads = True
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
