"""tbd's API from a client nobody here wrote: Python's grpcio (gRPC's C core), with stubs
generated from proto/ by grpcio-tools, on tbd's unix socket with default channel options.

usage: client.py SOCKET PROTO_DIR STUB_DIR SERVE_SIM_URL
Prints one JSON object with what each call returned.
"""
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request

sock, proto_dir, stub_dir, url = sys.argv[1:5]
subprocess.run(
    [sys.executable, "-m", "grpc_tools.protoc", "-I", proto_dir,
     "--python_out", stub_dir, "--grpc_python_out", stub_dir,
     "trafficbench/v1/tbd.proto"],
    check=True,
)
sys.path.insert(0, stub_dir)
import grpc  # noqa: E402
from trafficbench.v1 import tbd_pb2, tbd_pb2_grpc  # noqa: E402

out = {"grpc_version": grpc.__version__}
stub = tbd_pb2_grpc.TbdStub(grpc.insecure_channel("unix:" + sock))
info = stub.GetInfo(tbd_pb2.GetInfoRequest(), timeout=10)
out["version"] = info.version
out["probes"] = len(info.probes)
out["sensors"] = {s.name: s.present for s in info.sensors}
run = stub.StartCapture(
    tbd_pb2.StartCaptureRequest(client_pids=[os.getpid()], label="grpcio"), timeout=10
)
out["run_id"] = run.run_id
# TailExchanges: the run's exchanges as tbd completes them, on a stream of its own.
tailed = []
tail = stub.TailExchanges(tbd_pb2.TailRequest(run_id=run.run_id))


def follow():
    try:
        for e in tail:
            tailed.append(e.path)
    except grpc.RpcError:
        pass  # cancelled below


follower = threading.Thread(target=follow)
follower.start()
time.sleep(0.3)  # the stream is open before the traffic starts
# Traffic of this process for the capture to time: three chat requests to serve-sim.
for i in range(3):
    body = json.dumps({"model": "sim-model", "max_tokens": 4, "stream": False,
                       "messages": [{"role": "user", "content": "hello %d" % i}]}).encode()
    req = urllib.request.Request(url + "/v1/chat/completions", data=body,
                                 headers={"content-type": "application/json"})
    urllib.request.urlopen(req, timeout=10).read()
deadline = time.time() + 5
while tailed.count("/v1/chat/completions") < 3 and time.time() < deadline:
    time.sleep(0.05)
tail.cancel()
follower.join()
out["tailed"] = tailed
stopped = stub.StopCapture(tbd_pb2.StopCaptureRequest(run_id=run.run_id), timeout=30)
out["stopped_exchanges"] = stopped.exchanges
out["end_reason"] = stopped.end_reason
out["listed"] = run.run_id in [r.run_id for r in stub.ListRuns(tbd_pb2.ListRunsRequest(), timeout=10).runs]
exchanges = list(stub.QueryExchanges(tbd_pb2.QueryRequest(run_id=run.run_id), timeout=10))
out["exchanges"] = [{"side": e.side, "path": e.path, "status": e.http_status,
                     "chunks": len(e.chunks)} for e in exchanges]
try:
    list(stub.QueryEnergy(tbd_pb2.EnergyQuery(), timeout=10))
    out["energy"] = "samples"
except grpc.RpcError as e:
    out["energy"] = "%s: %s" % (e.code().name, e.details())
try:
    stub.GetRun(tbd_pb2.GetRunRequest(run_id="no-such-run"), timeout=10)
    out["missing_run"] = "found"
except grpc.RpcError as e:
    out["missing_run"] = e.code().name
print(json.dumps(out))
