#!/usr/bin/env python3
"""The gRPC application behind the ingress in the ingress tests: a stand-in for flyteadmin's AdminService.

    grpc_upstream.py   listen on 127.0.0.1 (a free port, plaintext HTTP/2), print the port, serve until SIGTERM

`ListProjects` answers one project whose id and name are the `x-user-subject` metadata the call arrived with
(empty when there was none) and whose description is JSON of every `x-user-*` metadata entry received, as
`[[key, value], ...]` in arrival order, so a test sees what nginx passed on and whether a client-sent value
survived. `GetVersion` answers a fixed version. Every other method is UNIMPLEMENTED.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from concurrent import futures

import grpc
from flyteidl.admin import project_pb2, version_pb2
from flyteidl.service import admin_pb2_grpc

VERSION = "echo-upstream"


class Admin(admin_pb2_grpc.AdminServiceServicer):
    def ListProjects(self, request, context):  # noqa: N802 (the generated base class's name)
        metadata = list(context.invocation_metadata())
        identity = [[key, value] for key, value in metadata if key.lower().startswith("x-user-")]
        subjects = [value for key, value in metadata if key.lower() == "x-user-subject"]
        subject = subjects[0] if len(subjects) == 1 else ""
        return project_pb2.Projects(
            projects=[
                project_pb2.Project(id=subject, name=subject, description=json.dumps(identity)),
            ]
        )

    def GetVersion(self, request, context):  # noqa: N802
        return version_pb2.GetVersionResponse(
            control_plane_version=version_pb2.Version(Build=VERSION, Version="0.0.0", BuildTime="-")
        )


def main() -> int:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    admin_pb2_grpc.add_AdminServiceServicer_to_server(Admin(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    if port == 0:
        print("grpc-upstream: could not bind 127.0.0.1", file=sys.stderr, flush=True)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    print(port, flush=True)
    stop.wait()
    server.stop(grace=1).wait(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
