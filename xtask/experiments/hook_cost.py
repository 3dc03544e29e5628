"""Hook-cost study (issue 21): what does each family of attach points cost per streamed request,
before any probe logic? tbd's data path today is per-syscall tracepoints (enter and exit of
write, writev, sendto, ..., exit of read, recvfrom, ...). The alternatives this kernel allows are
per-socket tracepoints (sock/sock_send_length, sock/sock_recv_length), per-segment cgroup_skb
programs (ingress and egress), and the arrival pair tbd uses now (tcp/tcp_probe,
sock/sk_data_ready).

Each hook set gets the same minimal program: one helper call (bpf_ktime_get_ns, which every
probe needs for its time stamp) and a return that lets everything through. A no-op variant
(no helper call) shows the dispatch alone for the syscall set. The load is wrk against
../shared/bench/fast-sse (256 connections, 16-chunk SSE bodies), so both ends are on this host
as in the capture-cost bench. Rounds interleave the hook sets; per set the median over rounds of
whole-machine busy CPU per request (/proc/stat) and requests/s (nginx's counter) are printed,
and the difference to no hooks. A last short pass with kernel.bpf_stats_enabled=1 counts each
set's program runs per request and their mean run time.

usage (root, fast-sse started): [ONLY="set;set"] python3 hook_cost.py [ROUNDS] [SECONDS]

MICRO=1 measures the same sets without wrk, nginx or the whole machine: one process plays
client and server over a loopback TCP connection, each iteration a 64-byte request written and
read and a 180-byte reply written and read (four data syscalls, both ends' segments), and the
figure is its own CPU time per iteration (on loopback the receive path runs in the sender's
context, so the kernel's side is in it). A whole-machine round on this 2-core VM moves by a few
µs per request, more than the difference between hook families; this resolves tens of ns.
"""
import ctypes, ctypes.util, os, statistics, struct, subprocess, sys, time, urllib.request

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
SECONDS = int(sys.argv[2]) if len(sys.argv) > 2 else 4
HERE = os.path.dirname(os.path.abspath(__file__))
FAST_SSE = os.path.normpath(os.path.join(HERE, "../../../shared/bench/fast-sse"))
URL = "http://127.0.0.1:18090/v1/chat/completions"
STATUS = "http://127.0.0.1:18090/nginx_status"
TRACEFS = "/sys/kernel/tracing"
CGROUP = "/sys/fs/cgroup/unified"

libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
libc.syscall.restype = ctypes.c_long
SYS_BPF, SYS_PERF_EVENT_OPEN = 321, 298
BPF_PROG_LOAD, BPF_PROG_ATTACH, BPF_PROG_DETACH = 5, 8, 9
PROG_TRACEPOINT, PROG_CGROUP_SKB, PROG_RAW_TRACEPOINT = 5, 8, 17
BPF_RAW_TRACEPOINT_OPEN = 17
CGROUP_INET_INGRESS, CGROUP_INET_EGRESS = 0, 1
PERF_EVENT_IOC_ENABLE, PERF_EVENT_IOC_SET_BPF = 0x2400, 0x40042408


def insn(code, dst=0, src=0, off=0, imm=0):
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


MOV_K, CALL, EXIT = 0xB7, 0x85, 0x95
KTIME_GET_NS = 5


def program(ret, helper):
    body = insn(CALL, imm=KTIME_GET_NS) if helper else b""
    return body + insn(MOV_K, dst=0, imm=ret) + insn(EXIT)


def bpf(cmd, attr):
    buf = ctypes.create_string_buffer(attr, 144)
    fd = libc.syscall(SYS_BPF, cmd, buf, ctypes.c_uint(144))
    if fd < 0:
        raise OSError(ctypes.get_errno(), f"bpf cmd {cmd}: {os.strerror(ctypes.get_errno())}")
    return fd


def load(prog_type, code):
    insns = ctypes.create_string_buffer(code, len(code))
    lic = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(65536)
    attr = struct.pack("<IIQQIIQII16s", prog_type, len(code) // 8, ctypes.addressof(insns),
                       ctypes.addressof(lic), 1, len(log), ctypes.addressof(log), 0, 0, b"hookcost")
    try:
        return bpf(BPF_PROG_LOAD, attr)
    except OSError as e:
        raise OSError(e.errno, f"{e}: {log.value.decode(errors='replace')}")


class PerfEventAttr(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint32), ("size", ctypes.c_uint32), ("config", ctypes.c_uint64),
                ("sample_period", ctypes.c_uint64), ("sample_type", ctypes.c_uint64),
                ("read_format", ctypes.c_uint64), ("flags", ctypes.c_uint64),
                ("wakeup_events", ctypes.c_uint32), ("bp_type", ctypes.c_uint32),
                ("rest", ctypes.c_uint8 * 64)]


def attach_tracepoint(cat, name, prog):
    tp_id = int(open(f"{TRACEFS}/events/{cat}/{name}/id").read())
    attr = PerfEventAttr(type=2, size=ctypes.sizeof(PerfEventAttr), config=tp_id, sample_period=1,
                         wakeup_events=1)
    # A BPF program on a tracepoint runs for every hit on every CPU, whatever the event's CPU.
    fd = libc.syscall(SYS_PERF_EVENT_OPEN, ctypes.byref(attr), -1, 0, -1, 8)  # FD_CLOEXEC
    if fd < 0:
        raise OSError(ctypes.get_errno(), f"perf_event_open {cat}/{name}")
    if libc.ioctl(fd, PERF_EVENT_IOC_SET_BPF, prog) < 0 or libc.ioctl(fd, PERF_EVENT_IOC_ENABLE, 0) < 0:
        raise OSError(ctypes.get_errno(), f"attach to {cat}/{name}")
    return lambda: os.close(fd)


def attach_raw_tracepoint(name, prog):
    # Attached straight to the tracepoint: no perf event, no record built before the program.
    cname = ctypes.create_string_buffer(name.encode())
    fd = bpf(BPF_RAW_TRACEPOINT_OPEN, struct.pack("<QI", ctypes.addressof(cname), prog))
    return lambda: os.close(fd)


def attach_cgroup(attach_type, prog):
    cg = os.open(CGROUP, os.O_RDONLY | os.O_DIRECTORY)
    bpf(BPF_PROG_ATTACH, struct.pack("<IIII", cg, prog, attach_type, 0))

    def detach():
        bpf(BPF_PROG_DETACH, struct.pack("<IIII", cg, prog, attach_type, 0))
        os.close(cg)
    return detach


# tbd's syscall tracepoints (tbd/src/probes.rs), the data path a request pays today.
SYSCALLS = [f"sys_{w}_{c}" for c in ["connect", "accept", "accept4", "write", "writev", "sendto",
                                      "sendmsg", "sendmmsg"] for w in ["enter", "exit"]]
SYSCALLS += ["sys_exit_getpeername", "sys_exit_read", "sys_exit_readv", "sys_exit_recvfrom",
             "sys_exit_recvmsg", "sys_enter_close"]

SETS = {
    "none": [],
    "syscalls, no-op": [("tp", "syscalls", s, False) for s in SYSCALLS],
    "syscalls": [("tp", "syscalls", s, True) for s in SYSCALLS],
    # One syscall tracepoint no request calls: every syscall of every process still takes the
    # tracing path (the per-task flag is global), but no program runs.
    "syscall slow path only": [("tp", "syscalls", "sys_enter_acct", False)],
    # The raw sys_enter/sys_exit pair: one program for every syscall of every process, with no
    # perf record built per hit (what a raw_tp or tp_btf data path would pay before filtering).
    "raw_tp sys_enter+exit": [("raw", "sys_enter", None, True), ("raw", "sys_exit", None, True)],
    "sock_send/recv_length": [("tp", "sock", "sock_send_length", True),
                              ("tp", "sock", "sock_recv_length", True)],
    # The same two as raw tracepoints (tp_btf pays the same dispatch): no perf record per hit.
    "raw_tp sock_send/recv_length": [("raw", "sock_send_length", None, True),
                                     ("raw", "sock_recv_length", None, True)],
    # A data path without data syscall tracepoints: sends and receives at the socket layer
    # (raw), segments at cgroup_skb, and only the connection syscalls traced.
    "raw sock_*_length + cgroup_skb + connection syscalls": [
        ("raw", "sock_send_length", None, True), ("raw", "sock_recv_length", None, True),
        ("cg", CGROUP_INET_INGRESS, None, True), ("cg", CGROUP_INET_EGRESS, None, True)] + [
        ("tp", "syscalls", s, True) for s in SYSCALLS
        if any(c in s for c in ["connect", "accept", "getpeername", "close"])],
    # The same without any syscall tracepoint, so without the tracing slow path on every syscall
    # (connections then seen at the socket layer: inet_sock_set_state, cgroup connect hooks).
    "raw sock_*_length + cgroup_skb": [
        ("raw", "sock_send_length", None, True), ("raw", "sock_recv_length", None, True),
        ("cg", CGROUP_INET_INGRESS, None, True), ("cg", CGROUP_INET_EGRESS, None, True)],
    "cgroup_skb in+out": [("cg", CGROUP_INET_INGRESS, None, True),
                          ("cg", CGROUP_INET_EGRESS, None, True)],
    "tcp_probe+sk_data_ready": [("tp", "tcp", "tcp_probe", True),
                                ("tp", "sock", "sk_data_ready", True)],
}


def attach_set(hooks):
    undo, progs = [], []
    for kind, a, b, helper in hooks:
        if kind == "tp":
            p = load(PROG_TRACEPOINT, program(0, helper))
            undo.append(attach_tracepoint(a, b, p))
        elif kind == "raw":
            p = load(PROG_RAW_TRACEPOINT, program(0, helper))
            undo.append(attach_raw_tracepoint(a, p))
        else:
            p = load(PROG_CGROUP_SKB, program(1, helper))
            undo.append(attach_cgroup(a, p))
        progs.append(p)
    return undo, progs


def release(undo, progs):
    for u in undo:
        u()
    for p in progs:
        os.close(p)


def nginx_requests():
    text = urllib.request.urlopen(STATUS).read().decode().split("\n")
    return int(text[2].split()[2])


def busy():
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return f[0] + f[1] + f[2] + f[5] + f[6], sum(f[:8])


def run_wrk(seconds):
    n0, (b0, a0) = nginx_requests(), busy()
    subprocess.run(["wrk", "-t2", "-c256", f"-d{seconds}s", "-s", f"{FAST_SSE}/post.lua", URL],
                   check=True, capture_output=True)
    n1, (b1, a1) = nginx_requests(), busy()
    n = n1 - n0 - 1
    hz = os.sysconf("SC_CLK_TCK")
    return n / seconds, (b1 - b0) / hz / n * 1e6


PINGPONG_C = r"""
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
static double cpu(void) {
    struct rusage u; getrusage(RUSAGE_SELF, &u);
    return u.ru_utime.tv_sec + u.ru_stime.tv_sec + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}
static void all(int fd, char *b, int n, int wr) {
    for (int k = 0; k < n;) { int r = wr ? write(fd, b + k, n - k) : read(fd, b + k, n - k);
        if (r <= 0) { perror("io"); exit(1); } k += r; }
}
int main(int argc, char **argv) {
    long n = atol(argv[1]);
    int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (bind(l, (void *)&a, sizeof a) || listen(l, 1) || getsockname(l, (void *)&a, &al)) return 1;
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(c, (void *)&a, sizeof a)) return 1;
    int s = accept(l, 0, 0);
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char req[64] = "POST /v1/chat/completions HTTP/1.1", rsp[180] = "data: {}";
    double t0 = cpu();
    for (long i = 0; i < n; i++) { all(c, req, 64, 1); all(s, req, 64, 0); all(s, rsp, 180, 1); all(c, rsp, 180, 0); }
    printf("%.1f\n", (cpu() - t0) / n * 1e9);
    return 0;
}
"""
PINGPONG = "/tmp/tb_hook_pingpong"


def pingpong(n):
    if not os.path.exists(PINGPONG):
        src = PINGPONG + ".c"
        open(src, "w").write(PINGPONG_C)
        subprocess.run(["cc", "-O2", "-o", PINGPONG, src], check=True)
    out = subprocess.run([PINGPONG, str(n)], check=True, capture_output=True, text=True).stdout
    return float(out)


def interleaved(measure):
    """`measure()` under each hook set, ROUNDS interleaved rounds (order reversed every other
    round, so that a drift across a round cancels); the results per set."""
    results = {name: [] for name in SETS}
    for r in range(ROUNDS):
        order = list(SETS) if r % 2 == 0 else list(reversed(SETS))
        for name in order:
            undo, progs = attach_set(SETS[name])
            try:
                results[name].append(measure())
            finally:
                release(undo, progs)
    return results


def with_stats(name, work):
    """(program runs, run time ns) of set `name` over `work()`, with BPF statistics on."""
    old = open("/proc/sys/kernel/bpf_stats_enabled").read().strip()
    open("/proc/sys/kernel/bpf_stats_enabled", "w").write("1")
    undo, progs = attach_set(SETS[name])
    try:
        work()
        return sum(prog_stats(p)[0] for p in progs), sum(prog_stats(p)[1] for p in progs)
    finally:
        release(undo, progs)
        open("/proc/sys/kernel/bpf_stats_enabled", "w").write(old)


def micro(iters):
    """The MICRO=1 study: ns of CPU per iteration of the ping-pong, per hook set."""
    results = interleaved(lambda: pingpong(iters))
    base = results["none"]
    print(f"loopback ping-pong, {iters} iterations (4 data syscalls each), {ROUNDS} interleaved")
    print("rounds; 'added' is the median of each round's difference to that round's run without hooks")
    print(f"{'hooks':40} {'CPU ns/iter':>11} {'added':>7}  runs/iter  ns/run")
    for name in SETS:
        cpu = statistics.median(results[name])
        added = statistics.median(c - b for c, b in zip(results[name], base))
        runs = ns = "-"
        if SETS[name]:
            cnt, tns = with_stats(name, lambda: pingpong(iters // 10))
            runs, ns = f"{cnt / (iters // 10):.2f}", f"{tns / max(cnt, 1):.0f}"
        print(f"{name:40} {cpu:11.0f} {added:+7.0f}  {runs:>9} {ns:>7}")
    for name in SETS:
        print(name, " ".join(f"{c:.0f}" for c in results[name]))


def prog_stats(fd):
    info = dict(l.split(":\t", 1) for l in open(f"/proc/self/fdinfo/{fd}").read().splitlines() if ":\t" in l)
    return int(info.get("run_cnt", 0)), int(info.get("run_time_ns", 0))


def main():
    # ONLY="syscalls;cgroup_skb in+out" narrows the study to those sets (none is always kept;
    # ';' separates them, since set names hold commas).
    only = os.environ.get("ONLY")
    if only:
        keep = {"none", *only.split(";")}
        unknown = keep - set(SETS)
        if unknown:
            sys.exit(f"ONLY names no set {sorted(unknown)}; sets: {list(SETS)}")
        for name in [n for n in SETS if n not in keep]:
            del SETS[name]
    if not os.path.isdir(f"{TRACEFS}/events"):
        subprocess.run(["mount", "-t", "tracefs", "tracefs", TRACEFS], check=True)
    if os.environ.get("MICRO"):
        return micro(int(os.environ.get("ITERS", "200000")))
    results = interleaved(lambda: run_wrk(SECONDS))
    base = results["none"]
    print(f"wrk -c256 on fast-sse, {ROUNDS} interleaved rounds of {SECONDS} s; medians. 'kept' and")
    print("'added' are medians of each round's ratio and difference to that round's run without hooks")
    print(f"{'hooks':26} {'req/s':>8} {'kept':>6} {'CPU µs/req':>11} {'added':>7}   runs/req  ns/run")
    for name in SETS:
        rps = statistics.median(q for q, _ in results[name])
        cpu = statistics.median(c for _, c in results[name])
        kept = statistics.median(q / b[0] for (q, _), b in zip(results[name], base))
        added = statistics.median(c - b[1] for (_, c), b in zip(results[name], base))
        runs = ns = "-"
        if SETS[name]:
            n0 = nginx_requests()
            cnt, tns = with_stats(name, lambda: subprocess.run(
                ["wrk", "-t2", "-c256", "-d2s", "-s", f"{FAST_SSE}/post.lua", URL],
                check=True, capture_output=True))
            n = nginx_requests() - n0 - 1
            runs, ns = f"{cnt / n:.1f}", f"{tns / max(cnt, 1):.0f}"
        print(f"{name:26} {rps:8.0f} {kept:6.3f} {cpu:11.2f} {added:+7.2f}   {runs:>8} {ns:>7}")
    for name in SETS:
        print(name, " ".join(f"{q:.0f}/{c:.1f}" for q, c in results[name]))


if __name__ == "__main__":
    main()
