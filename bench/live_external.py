"""Live audio measured from outside the processes: latency, skew, losses, stall, CPU, RSS.

N real `loa-agent` processes (profile sim, `LOA_AGENT_AUDIO_OUTPUT=raw:<fifo>`) hand raw PCM
to FIFOs as their sample clock plays it; a real `loa-server serve` process (SQLite, its own
Mosquitto) publishes a session fed by a real `loa-server live --input -` process, into whose
stdin a paced writer thread writes 10 ms chunks, stamping time.monotonic() before each write.
An epoll capture thread stamps every FIFO read. Noise markers (audio/signals.py) are found in
each capture by cross-correlation and matched to the source by their position in time.

Times: a source sample's instant is its chunk's write stamp minus its distance to the chunk's
end (a capture device hands a chunk over once its last sample is in). A captured sample's
*arrival* is the stamp of the read that brought it; its *output-clock* instant puts it on the
agent's sample clock: per read, (stamp - samples so far / rate) is when sample 0 would have
played if that read came at once; the minimum over the reads within +-0.5 s is the clock
(reads only come late, never early). Latency is reported beyond the declared playout delay.
Skew per marker is the latest minus the earliest output-clock instant across receivers.

Stall scenario (--stall-s): the writer stops for that long mid-way, then writes the backlog
its capture device would have buffered, as fast as the pipe takes it, and goes on paced.
"Latency after" counts markers spoken 2 s or more after it resumed.

CPU is CPU-seconds per audio-second of each process (from /proc, less load-sensitive than a
percentage of wall time), over the session; RSS at the end. The load average is printed, and
`reference_cpu_ms` before and after: this machine's speed at the time (bench/_speed.py).

Usage: python bench/live_external.py [--receivers 10] [--delay-ms 200] [--seconds 20]
                                     [--stall-s 0] [--spacing-s 0.5] [--frame-ms 20|40]
                                     [--send-ms 40]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import select
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from audio.pcm import SAMPLE_RATE  # noqa: E402
from audio.signals import find_markers, make_marker  # noqa: E402
from bench._speed import reference_cpu_ms  # noqa: E402
from server.broker.process import free_port, start_broker, stop_broker  # noqa: E402
from server.broker.service import apply_broker_config  # noqa: E402
from server.db import make_engine, make_session_factory, session_scope  # noqa: E402
from server.migrate import upgrade  # noqa: E402
from server.settings import ServerSettings  # noqa: E402

CHUNK = 480  # the writer's 10 ms chunks
KINDS = 8  # different markers
ADMIN_PASSWORD = "bench-admin-password"
BIN = Path(sys.executable).parent


def api(base: str, method: str, path: str, token: str | None = None, **kw: Any) -> Any:
    """One HTTP call (httpx is a test dependency; the bench runs in the dev venv)."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = httpx.request(method, base + path, headers=headers, timeout=30, **kw)
    r.raise_for_status()
    return r.json()


def proc_stat(pid: int) -> tuple[float, float]:
    """(CPU seconds, RSS MB) of a process from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / tick
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return cpu, rss


class Capture(threading.Thread):
    """epoll over the FIFOs: every read kept with its time.monotonic() stamp."""

    def __init__(self, paths: list[Path]) -> None:
        super().__init__(daemon=True)
        self.fds = [os.open(p, os.O_RDONLY | os.O_NONBLOCK) for p in paths]
        self.reads: list[list[tuple[float, bytes]]] = [[] for _ in paths]
        self.stop = False

    def run(self) -> None:
        ep = select.epoll()
        index = {fd: i for i, fd in enumerate(self.fds)}
        for fd in self.fds:
            ep.register(fd, select.EPOLLIN)
        while not self.stop:
            for fd, _ in ep.poll(0.1):
                t = time.monotonic()
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                if data:
                    self.reads[index[fd]].append((t, data))
        ep.close()


def timeline(reads: list[tuple[float, bytes]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Samples, each sample's arrival stamp, and its output-clock instant."""
    if not reads:
        return np.zeros(0, np.int16), np.zeros(0), np.zeros(0)
    data = b"".join(d for _, d in reads)
    data = data[: len(data) // 2 * 2]
    pcm = np.frombuffer(data, dtype="<i2")
    ends = np.cumsum([len(d) // 2 for _, d in reads])
    stamps = np.array([t for t, _ in reads])
    arrival = np.repeat(stamps, np.diff(np.concatenate([[0], ends])))[: len(pcm)]
    origin = stamps - ends / SAMPLE_RATE
    # Reads come late, never early: the clock is the lowest origin among nearby reads.
    lo = np.searchsorted(stamps, stamps - 0.5)
    hi = np.searchsorted(stamps, stamps + 0.5)
    best = np.array([origin[a:b].min() for a, b in zip(lo, hi, strict=True)])
    per_sample = np.repeat(best, np.diff(np.concatenate([[0], ends])))[: len(pcm)]
    output = per_sample + np.arange(len(pcm)) / SAMPLE_RATE
    return pcm, arrival, output


COUNTS = re.compile(
    r"frames played (\d+), concealed (\d+), late (\d+), dropped (\d+)(?:, output gaps (\d+))?"
)


def proof_counts(base: str, token: str, zone: int, sid: str, receivers: int) -> dict[str, Any]:
    """Each receiver's proof of play for the session (they come within seconds of its end)."""
    deadline = time.monotonic() + 15
    while True:
        items = api(base, "GET", f"/api/v1/plays?zone_id={zone}&limit=200", token)["items"]
        ours = [p for p in items if p["item_id"] == f"live:{sid}"]
        if len(ours) >= receivers or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    found = [m.groups(default="0") for p in ours if (m := COUNTS.search(p["reason"]))]
    names = ("played", "concealed", "late", "dropped", "output_gaps")
    out: dict[str, Any] = {"reported": len(ours)}
    out |= {name: [int(g[i]) for g in found] for i, name in enumerate(names)}
    return out


def pct(values: list[float], q: float) -> float | None:
    """A percentile in ms, or None."""
    return round(float(np.percentile(values, q)) * 1000, 3) if values else None


def run(args: argparse.Namespace) -> dict[str, Any]:
    """One measured session; the figures as a dict."""
    tmp = Path(tempfile.mkdtemp(prefix="loa-live-ext-"))
    http_port, mqtt_port = free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LOA_")},
        "LOA_DATA_DIR": str(tmp / "data"),
        "LOA_DATABASE_URL": f"sqlite:///{tmp / 'loa.db'}",
        "LOA_HTTP_HOST": "127.0.0.1",
        "LOA_HTTP_PORT": str(http_port),
        "LOA_MQTT_PORT": str(mqtt_port),
        "LOA_MQTT_PASSWORD": secrets.token_urlsafe(12),
        "LOA_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "LOA_PLANNER_ENABLED": "false",
        "LOA_MQTT_TLS_PORT": "0",  # agents use the loopback listener; 8883 may be taken
        "LOA_LIVE_FRAME_MS": str(args.frame_ms),
        "LOA_LIVE_SEND_MS": str(args.send_ms),
        "PYTHONPATH": str(ROOT),
    }
    settings = ServerSettings(
        data_dir=tmp / "data",
        database_url=env["LOA_DATABASE_URL"],
        mqtt_port=mqtt_port,
        mqtt_password=env["LOA_MQTT_PASSWORD"],
        admin_password=ADMIN_PASSWORD,
        planner_enabled=False,
        mqtt_tls_port=0,
    )
    engine = make_engine(settings.db_url)
    upgrade(engine)
    with session_scope(make_session_factory(engine)) as db:
        conf = apply_broker_config(db, settings=settings)
    engine.dispose()
    broker = start_broker(conf, host="127.0.0.1", port=mqtt_port)
    procs: list[subprocess.Popen[bytes]] = []
    log = (tmp / "processes.log").open("ab")
    try:
        server = subprocess.Popen(
            [str(BIN / "loa-server"), "serve", "--no-migrate"], env=env, stdout=log, stderr=log
        )
        procs.append(server)
        base = f"http://127.0.0.1:{http_port}"
        deadline = time.monotonic() + 60
        token = None
        while token is None:
            try:
                form = {"username": "admin", "password": ADMIN_PASSWORD}
                token = api(base, "POST", "/api/v1/auth/token", data=form)["access_token"]
            except Exception:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"the server did not start (log: {tmp})") from None
                time.sleep(0.3)
        org = api(base, "POST", "/api/v1/org-units", token,
                  json={"name": "Xã Đo", "kind": "commune"})["id"]  # fmt: skip
        fifos, agents, ids = [], [], []
        for i in range(args.receivers):
            uid = f"ext-{i:02d}"
            made = api(base, "POST", "/api/v1/devices", token,
                       json={"uid": uid, "name": uid, "org_unit_id": org,
                             "firmware_profile": "sim"})  # fmt: skip
            ids.append(made["device"]["id"])
            fifo = tmp / f"{uid}.pcm"
            os.mkfifo(fifo)
            fifos.append(fifo)
            agent_env = {
                **env,
                "LOA_AGENT_DEVICE_ID": uid,
                "LOA_AGENT_MQTT_HOST": "127.0.0.1",
                "LOA_AGENT_MQTT_PORT": str(mqtt_port),
                "LOA_AGENT_MQTT_PASSWORD": made["credentials"]["password"],
                "LOA_AGENT_DATA_DIR": str(tmp / uid),
                "LOA_AGENT_AUDIO_OUTPUT": f"raw:{fifo}",
            }
            agents.append((uid, agent_env))
        zone = api(base, "POST", "/api/v1/zones", token,
                   json={"org_unit_id": org, "name": "Loa", "device_ids": ids})["id"]  # fmt: skip
        capture = Capture(fifos)
        capture.start()
        for _uid, agent_env in agents:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "edge_agent", "run", "--sim"],
                    env=agent_env,
                    stdout=log,
                    stderr=log,
                )
            )
        deadline = time.monotonic() + 60
        while not all(api(base, "GET", f"/api/v1/devices/{d}", token)["online"] for d in ids):
            if time.monotonic() > deadline:
                raise RuntimeError(f"not every agent came online (log: {tmp})")
            time.sleep(0.5)
        time.sleep(args.settle_s)  # let the agents' clock estimates settle as they would
        return measure(args, base=base, token=token, zone=zone, env=env, procs=procs,
                       capture=capture, log=log)  # fmt: skip
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        stop_broker(broker)
        log.close()


def measure(
    args: argparse.Namespace,
    *,
    base: str,
    token: str,
    zone: int,
    env: dict[str, str],
    procs: list[subprocess.Popen[bytes]],
    capture: Capture,
    log: Any,
) -> dict[str, Any]:
    """Start the session through the CLI, write the source, find the markers."""
    # Eight different noise bursts in turn: a marker is known by its content, so a late one is
    # never taken for the next one (same-content markers are 8 x spacing apart).
    markers = [make_marker(seed=11 + j) for j in range(KINDS)]
    n = round(args.seconds * SAMPLE_RATE)
    source = np.zeros(n, np.int16)
    first_s, spacing = 1.0, args.spacing_s
    starts = [round((first_s + k * spacing) * SAMPLE_RATE)
              for k in range(int((args.seconds - first_s - 0.5) / spacing))]  # fmt: skip
    for k, s in enumerate(starts):
        source[s : s + len(markers[k % KINDS])] = markers[k % KINDS]
    cli = subprocess.Popen(
        [str(BIN / "loa-server"), "live", "--input", "-", "--zone", str(zone),
         "--delay-ms", str(args.delay_ms), "--yes"],
        env={**env, "LOA_SERVER": base, "LOA_TOKEN": token},
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
    )  # fmt: skip
    assert cli.stdin is not None and cli.stdout is not None
    sid = ""
    for line in cli.stdout:  # "live session <id> started", then "ingest <url>"
        text = line.decode()
        log.write(line)
        if text.startswith("live session "):
            sid = text.split()[2]
        if text.startswith("ingest "):
            break
    deadline = time.monotonic() + 20
    while True:  # every device joined before the first word
        views = [v for v in api(base, "GET", "/api/v1/live", token) if v["id"] == sid]
        if views and views[0]["listeners"] == len(capture.reads):
            break
        if time.monotonic() > deadline:
            raise RuntimeError("not every device joined the session")
        time.sleep(0.2)
    time.sleep(args.quiet_s)
    before = {p.pid: proc_stat(p.pid)[0] for p in [*procs, cli]}
    stamps = np.zeros(n // CHUNK + 1)
    stall_at = n // 2 // CHUNK if args.stall_s else -1
    t0 = time.monotonic()
    resumed = None
    for i in range(0, n // CHUNK):
        due = t0 + (i + 1) * CHUNK / SAMPLE_RATE
        if i == stall_at:
            time.sleep(args.stall_s)  # the capture device keeps recording meanwhile
        elif due > time.monotonic():
            time.sleep(max(0.0, due - time.monotonic()))  # may have passed meanwhile
        if args.stall_s and i == stall_at + 1:
            resumed = time.monotonic()
        stamps[i] = time.monotonic()
        cli.stdin.write(source[i * CHUNK : (i + 1) * CHUNK].tobytes())
        cli.stdin.flush()
    audio_s = time.monotonic() - t0
    after = {p.pid: proc_stat(p.pid) for p in [*procs, cli]}
    cli.stdin.close()
    cli.wait(30)
    time.sleep(args.delay_ms / 1000 + 0.5)
    capture.stop = True
    capture.join()
    proofs = proof_counts(base, token, zone, sid, len(capture.reads))
    src_t = [stamps[s // CHUNK] - (CHUNK - s % CHUNK) / SAMPLE_RATE for s in starts]
    delay = args.delay_ms / 1000
    out_t, arr_t = [], []
    for r, reads in enumerate(capture.reads):
        pcm, arrival, output = timeline(reads)
        if args.keep:
            np.save(Path(log.name).parent / f"capture-{r}.npy", pcm)
        outs, arrs = [np.nan] * len(src_t), [np.nan] * len(src_t)
        for j, marker in enumerate(markers):
            for f in find_markers(pcm, marker, threshold=0.6) if len(pcm) else []:
                i = int(f)
                o = output[i] + (f - i) / SAMPLE_RATE
                ks = range(j, len(src_t), KINDS)
                k = min(ks, key=lambda k: abs(o - (src_t[k] + delay)))
                if abs(o - (src_t[k] + delay)) < KINDS * spacing / 2:
                    outs[k], arrs[k] = o, arrival[i]
        out_t.append(outs)
        arr_t.append(arrs)
    out_a, arr_a, src_a = np.array(out_t), np.array(arr_t), np.array(src_t)
    late = (out_a - src_a - delay).T  # [marker][receiver]
    arr_late = (arr_a - src_a - delay).T
    # Markers spoken while the source was stalled reach the server as a stale backlog at
    # once: dropping them is the point of the stall scenario, so they are counted apart.
    stalled = [
        k
        for k in range(len(src_t))
        if resumed is not None and stamps[stall_at] - 0.1 <= src_t[k] <= resumed + 0.5
    ]
    missing = int(sum(np.isnan(late[k]).sum() for k in range(len(src_t)) if k not in stalled))
    clean = [k for k in range(len(src_t)) if resumed is None or src_t[k] < stamps[stall_at]]
    after_stall = [k for k in range(len(src_t)) if resumed is not None and src_t[k] >= resumed + 2]

    def lat(ks: list[int], a: np.ndarray = late) -> dict[str, Any]:
        v = [x for k in ks for x in a[k] if not np.isnan(x)]
        return {"p50_ms": pct(v, 50), "min_ms": pct(v, 0), "max_ms": pct(v, 100)}

    def skew(ks: list[int]) -> dict[str, Any]:
        v = [float(np.nanmax(late[k]) - np.nanmin(late[k])) for k in ks
             if np.sum(~np.isnan(late[k])) >= 2]  # fmt: skip
        return {"p50_ms": pct(v, 50), "p95_ms": pct(v, 95), "max_ms": pct(v, 100), "n": len(v)}

    server_pid, agent_pids = procs[0].pid, [p.pid for p in procs[1:]]
    cpu = {pid: (after[pid][0] - before[pid]) / audio_s for pid in after}
    return {
        "bench": "live_external",
        "receivers": len(capture.reads),
        "delay_ms": args.delay_ms,
        "frame_ms": args.frame_ms,
        "send_ms": args.send_ms,
        "seconds": args.seconds,
        "stall_s": args.stall_s,
        "markers": len(src_t),
        "missing_markers": missing,
        "stale_backlog_markers": {
            "markers": len(stalled),
            "dropped": int(sum(np.isnan(late[k]).sum() for k in stalled)),
        },
        "latency_beyond_delay_output_clock": lat(clean),
        "latency_beyond_delay_arrival": lat(clean, arr_late),
        "latency_beyond_delay_2s_after_stall": lat(after_stall) if resumed else None,
        "skew_first5": skew(clean[:5]),
        "skew_all": skew(clean),
        "receiver_latency_p50_ms": [
            pct([float(late[k, r]) for k in clean if not np.isnan(late[k, r])], 50)
            for r in range(late.shape[1])
        ],
        "missing_per_marker": [int(np.isnan(late[k]).sum()) for k in range(len(src_t))],
        "first5_latency_ms": [pct([x for x in late[k] if not np.isnan(x)], 50) for k in clean[:5]],
        "cpu_per_audio_s_receiver": {
            "mean": round(float(np.mean([cpu[p] for p in agent_pids])), 4),
            "max": round(max(cpu[p] for p in agent_pids), 4),
        },
        "cpu_per_audio_s_server": round(cpu[server_pid], 4),
        "cpu_per_audio_s_live_client": round(cpu[cli.pid], 4),
        "rss_mb_receiver": round(float(np.mean([after[p][1] for p in agent_pids])), 1),
        "rss_mb_server": round(after[server_pid][1], 1),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "cores": os.cpu_count(),
        # Per receiver, from its proof of play: a gap (its output ran dry) shifts what follows
        # it earlier on the FIFO's byte clock, so missing or early markers may come from one.
        "proofs": proofs,
    }


def main() -> None:
    """Parse, run, print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--receivers", type=int, default=10)
    parser.add_argument("--delay-ms", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--stall-s", type=float, default=0.0)
    parser.add_argument("--spacing-s", type=float, default=0.5)
    parser.add_argument(
        "--frame-ms",
        type=int,
        choices=(20, 40),
        default=ServerSettings().live_frame_ms,
        help="live frame length (default: the server's, LOA_LIVE_FRAME_MS)",
    )
    parser.add_argument(
        "--send-ms",
        type=int,
        default=ServerSettings().live_send_ms,
        help="audio per send, frames back to back (default: the server's, LOA_LIVE_SEND_MS)",
    )
    parser.add_argument("--settle-s", type=float, default=1.0)
    parser.add_argument(
        "--quiet-s",
        type=float,
        default=0.5,
        help="seconds between every device listening and the first write (an operator who "
        "waits longer than the server's first-audio wait, 2 s, starts it on silence)",
    )
    parser.add_argument("--keep", action="store_true", help="save each capture (.npy)")
    before = reference_cpu_ms()  # the machine's speed now: CPU figures need it (_speed.py)
    result = run(parser.parse_args())
    result["reference_cpu_ms"] = [before, reference_cpu_ms()]
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
