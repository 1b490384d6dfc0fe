"""Where the AWS stand-in's CPU goes, per AWS action: `GET /moto-api/ec2audit/cpu`."""
from __future__ import annotations

CPU_BY_ACTION: dict[str, list[float]] = {}  # "service.Action" → [calls, CPU seconds] (GET /moto-api/ec2audit/cpu)


def cpu_by_action() -> None:
    """Where the stand-in's CPU goes, per AWS action (request parsing, the backend and the response's
    serialisation, on the thread that served it): the bench reads it to tell our calls' cost from moto's."""
    import json
    import threading
    import time

    from moto.core.responses import BaseResponse
    from moto.moto_api._internal import urls as moto_api_urls

    lock = threading.Lock()
    original = BaseResponse._dispatch

    def timed(self, request, full_url=None, headers=None):
        started = time.thread_time()
        try:
            return original(self, request, full_url, headers)
        finally:
            try:
                key = f"{getattr(self, 'service_name', None) or type(self).__name__}.{self._get_action()}"
            except Exception:  # noqa: BLE001 - an unparseable request still costs CPU
                key = f"{type(self).__name__}.?"
            with lock:
                entry = CPU_BY_ACTION.setdefault(key, [0, 0.0])
                entry[0] += 1
                entry[1] += time.thread_time() - started

    def cpu(request, full_url, headers):
        with lock:
            body = json.dumps({k: {"calls": v[0], "cpu_s": round(v[1], 3)}
                               for k, v in sorted(CPU_BY_ACTION.items(), key=lambda kv: -kv[1][1])})
        return 200, {"Content-Type": "application/json"}, body

    BaseResponse._dispatch = timed
    moto_api_urls.url_paths["{0}/moto-api/ec2audit/cpu"] = cpu
