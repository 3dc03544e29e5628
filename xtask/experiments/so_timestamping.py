"""SO_TIMESTAMPNS evaluation (issue 22): can a client learn, from its own socket, when each streamed chunk
arrived? 64 streams against serve-sim (TTFT 40 ms, ITL 8 ms, jitter 50%, 32 tokens), each read
with recvmsg asking for the kernel's receive timestamp. A deliberately slow client (Python,
busy work per read) so that reads lag arrivals. Truth: serve-sim's log of each chunk's write.
Reports per chunk: read time - write, and for the chunk that ends each read (TCP reports the
timestamp of the last segment a read consumed) rx stamp - write.

usage: tbctl serve-sim --port-file PORT --truth TRUTH.jsonl &   (defaults: TTFT 40 ms, ITL 8 ms)
       python3 so_timestamping.py $(cat PORT) TRUTH.jsonl STREAMS REQUESTS BUSY_US_PER_READ
The first request of each stream is left out (they all arrive together)."""
import json, os, selectors, socket, sys, time

PORT, TRUTH, STREAMS, REQS, BUSY_US = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
SO_TIMESTAMPNS = 35  # SCM_TIMESTAMPNS too
mono0, real0 = time.clock_gettime_ns(time.CLOCK_MONOTONIC), time.clock_gettime_ns(time.CLOCK_REALTIME)
mono1 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
offset = real0 - (mono0 + mono1) // 2  # realtime - monotonic

def request(rid):
    body = json.dumps({"model": "sim-model", "stream": True, "max_tokens": 32,
                       "stream_options": {"include_usage": True},
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    return (f"POST /v1/chat/completions HTTP/1.1\r\nx-tb-rid: {rid}\r\nHost: x\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body

sel = selectors.DefaultSelector()
state = {}
next_rid = [0]
results = {}  # rid -> list of (content chunks completed in read, read_mono, rx_mono)

def start(sock):
    rid = next_rid[0]; next_rid[0] += 1
    state[sock] = {"rid": rid, "buf": b"", "reads": [], "head": False}
    sock.sendall(request(rid))

socks = []
for _ in range(STREAMS):
    s = socket.create_connection(("127.0.0.1", PORT))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
    socks.append(s)
for s in socks:
    start(s)
done = 0
while done < REQS:
    for key, _ in sel.select():
        s = key.fileobj
        st = state[s]
        try:
            data, anc, _, _ = s.recvmsg(65536, socket.CMSG_SPACE(16))
        except BlockingIOError:
            continue
        t_read = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        rx = None
        for level, typ, cdata in anc:
            if level == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS:
                sec, nsec = int.from_bytes(cdata[:8], "little"), int.from_bytes(cdata[8:16], "little")
                rx = sec * 10**9 + nsec - offset
        st["buf"] += data
        # Content chunks completed by this read (the SSE events with "content").
        n = 0
        finished = False
        last_is_content = False
        while b"\n\n" in st["buf"]:
            ev, st["buf"] = st["buf"].split(b"\n\n", 1)
            last_is_content = b'"content":"' in ev and b'"content":""' not in ev
            if last_is_content:
                n += 1
            if b"[DONE]" in ev:
                finished = True
        # The stamp is the last segment's: it times the last content chunk only if the read ended with it.
        st["reads"].append((n, t_read, rx if last_is_content and b"data:" not in st["buf"] else None))
        # Busy work per read: a slow client (parsing, bookkeeping) lets data wait in the socket.
        end = time.perf_counter_ns() + BUSY_US * 1000
        while time.perf_counter_ns() < end:
            pass
        if finished:
            results[st["rid"]] = st["reads"]
            done += 1
            if next_rid[0] < REQS + STREAMS:
                start(s)

truth = {}
for line in open(TRUTH):
    r = json.loads(line)
    if r.get("request_id") is not None:
        truth[int(r["request_id"])] = r
read_err, rx_err, first_in_coalesced_err = [], [], []
chunks_total = chunks_last = 0
ttft_read, ttft_rx = [], []
for rid, reads in results.items():
    if rid < STREAMS or rid not in truth:  # the first request of each stream: arrivals together
        continue
    w = [c[0] for c in truth[rid]["chunks"]]
    i = 0
    for n, t_read, rx in reads:
        if n == 0:
            continue
        for k in range(n):
            read_err.append((t_read - w[i + k]) / 1e6)
        if rx is not None:
            rx_err.append((rx - w[i + n - 1]) / 1e6)
            if n > 1:
                first_in_coalesced_err.append((rx - w[i]) / 1e6)
            if i == 0:
                (ttft_rx if n == 1 else []).append((rx - w[0]) / 1e6)
        if i == 0:
            ttft_read.append((t_read - w[0]) / 1e6)
        chunks_total += n; chunks_last += 1
        i += n
def q(v, p):
    v = sorted(v); return v[min(len(v) - 1, int(p * (len(v) - 1) + 0.5))] if v else float("nan")
print(json.dumps({
    "requests": len([r for r in results if r >= STREAMS]), "busy_us_per_read": BUSY_US,
    "chunks": chunks_total, "chunks_ending_a_read": chunks_last, "chunks_timed_by_rx_stamp": len(rx_err),
    "read_minus_write_ms": {"p50": q(read_err, .5), "p99": q(read_err, .99), "max": max(read_err)},
    "rx_of_last_chunk_in_read_minus_its_write_ms": {"p50": q(rx_err, .5), "p99": q(rx_err, .99), "min": min(rx_err), "max": max(rx_err)},
    "requests_whose_first_read_held_one_chunk": len(ttft_rx),
    "rx_minus_write_of_first_chunk_in_coalesced_reads_ms": {"n": len(first_in_coalesced_err), "p50": q(first_in_coalesced_err, .5), "p99": q(first_in_coalesced_err, .99)},
    "ttft_read_minus_write_ms": {"p50": q(ttft_read, .5), "p99": q(ttft_read, .99)},
    "ttft_rx_minus_write_ms_when_first_read_held_one_chunk": {"n": len(ttft_rx), "p50": q(ttft_rx, .5), "p99": q(ttft_rx, .99)},
}, indent=1))
