"""`loa-agent run --sim` killed with SIGKILL mid-download and mid-playback: nothing is lost.

Killed mid-item and back while some of it is left, the agent picks the item up at the sample
it would have reached (in step with the clusters that kept playing) and sends one proof of
play that says so; back after its audio would have ended, the proof says it was interrupted.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import sqlite3
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

from audio.decode import decode_to_pcm
from edge_agent.localdb import DB_FILE
from edge_agent.output import sim_timing_path
from loa_testkit.brokerfix import TestBroker
from loa_testkit.harness import (
    agent_env,
    eventually,
    finished,
    new_device_id,
    observing,
    run,
    start_process,
)
from loa_testkit.playfix import ServerDouble, at, document, heard, item, make_clip
from protocol import DesiredState, PlayEvent, TopicKind, encode
from protocol.clipchunk import encode_chunk, split
from protocol.mqtt_client import Outgoing
from protocol.topics import zone_clip_topic
from tests.edge_agent.test_rejoin import noise_clip

FAST_ENV = {
    "LOA_AGENT_CLIP_HOLDOFF_S": "0.5",
    "LOA_AGENT_CLIP_RETRY_MAX_S": "2",
    "LOA_AGENT_EVENT_RESEND_S": "2",
    "LOA_AGENT_CLOCK_SYNC_INTERVAL_S": "2",
}


def query(data_dir: Path, sql: str) -> list[tuple[object, ...]]:
    """Read the agent's database from outside (as an operator would with sqlite3)."""
    path = data_dir / DB_FILE
    if not path.exists():
        return []
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
        return list(db.execute(sql))


async def start_agent(
    broker: TestBroker, uid: str, password: str, tmp_path: Path, data_dir: Path
) -> asyncio.subprocess.Process:
    """`python -m edge_agent run --sim`, returning once its birth is seen."""
    env = agent_env(broker, uid, password, data_dir) | FAST_ENV
    async with observing(broker, uid, clear=False) as obs:
        proc = await start_process(
            "run", "--sim", env=env, cwd=tmp_path, log_file=tmp_path / "agent.log"
        )
        await obs.wait_for(TopicKind.STATUS, lambda m: m.type == "birth", timeout=20)
    return proc


async def kill(proc: asyncio.subprocess.Process, tmp_path: Path) -> None:
    proc.kill()
    code, _ = await finished(proc, tmp_path / "agent.log")
    assert code == -signal.SIGKILL


async def stop(proc: asyncio.subprocess.Process, tmp_path: Path) -> None:
    proc.send_signal(signal.SIGTERM)
    code, output = await finished(proc, tmp_path / "agent.log")
    assert code == 0, output[-3000:]


def test_a_kill_during_a_download_leaves_nothing_playable_and_the_restart_resumes(
    broker: TestBroker, tmp_path: Path
) -> None:
    uid = new_device_id()
    password = broker.add_device(uid, zone_ids=(7,))
    big = make_clip(tmp_path / "clips", seconds=8, codec="wav")  # 768 kB: 12 chunks
    parts = list(split(big.data, big.sha256))
    data_dir = tmp_path / "data"
    final, partial = (
        data_dir / "clips" / f"{big.sha256}.opus",
        data_dir / "clips" / f"{big.sha256}.part",
    )

    def chunks_on_disk() -> int:
        return len(query(data_dir, "SELECT idx FROM download_chunks"))

    async def scenario() -> None:
        server = ServerDouble(broker, [uid])
        await server.start()
        try:
            state = DesiredState(version=1, volume=50, zone_ids=[7])
            await server.publish_raw(uid, TopicKind.STATE, encode(state))
            await server.publish_schedule(document(uid, 1, [item("p@big", at(3600), [big])]))
            proc = await start_agent(broker, uid, password, tmp_path, data_dir)
            await asyncio.sleep(1.0)  # the desired state's zone subscription is in place
            topic = zone_clip_topic(7, big.sha256)
            for chunk in parts[:7]:
                await server.link.publish_wait(Outgoing(topic, encode_chunk(chunk), qos=1))
            await eventually(lambda: chunks_on_disk() == 7, what="seven chunks on disk")
            await kill(proc, tmp_path)  # the zone publication never finishes for this device

            assert not final.exists() and partial.exists()
            server.clips[big.sha256] = big.data
            before = len(server.clip_requests)
            proc = await start_agent(broker, uid, password, tmp_path, data_dir)
            await eventually(lambda: final.exists(), timeout=20, what="the verified clip")
            asked = [r.chunks for _u, r in server.clip_requests[before:]]
            assert asked == [list(range(7, len(parts)))]  # resumed: only what was missing
            await stop(proc, tmp_path)
        finally:
            await server.stop()

    run(scenario(), timeout=90)
    assert final.read_bytes() == big.data and not partial.exists()
    assert query(data_dir, "SELECT sha256 FROM clips") == [(big.sha256,)]


def test_a_kill_during_playback_loses_no_proof_of_play(broker: TestBroker, tmp_path: Path) -> None:
    uid = new_device_id()
    password = broker.add_device(uid, zone_ids=(7,))
    short, long = (
        make_clip(tmp_path / "c", seconds=1),
        make_clip(tmp_path / "c", seconds=5, freq=660),
    )
    data_dir = tmp_path / "data"

    def items_heard() -> list[str]:
        path = sim_timing_path(data_dir)
        lines = path.read_text().splitlines() if path.exists() else []
        return [r["label"] for r in map(json.loads, lines) if r["event"] == "item"]

    async def scenario() -> None:
        server = ServerDouble(broker, [uid], auto_ack=False)
        await server.start()
        try:
            await server.publish_raw(
                uid, TopicKind.STATE, encode(DesiredState(version=1, volume=50, zone_ids=[7]))
            )
            proc = await start_agent(broker, uid, password, tmp_path, data_dir)
            await asyncio.sleep(1.0)
            first, second, third = at(4), at(6), at(16)
            doc = document(
                uid,
                1,
                [
                    item("p@1", first, [short]),
                    item("p@2", second, [long]),
                    item("p@3", third, [short]),
                ],
            )
            await server.publish_schedule(doc)
            await server.publish_zone_clip(7, short)
            await server.publish_zone_clip(7, long)
            await eventually(lambda: len(server.events(uid)) >= 1, timeout=15, what="p@1's proof")
            await eventually(lambda: "p@2" in items_heard(), timeout=10, what="p@2 playing")
            await asyncio.sleep(second.timestamp() + 1.5 - time.time())
            await kill(proc, tmp_path)  # p@2 is half played; p@1's proof is not acknowledged
            assert query(data_dir, "SELECT seq FROM outbox") == [(1,)]
            # Back only after p@2's audio would have ended: nothing of it is left to rejoin.
            await asyncio.sleep(second.timestamp() + 5.5 - time.time())

            server.auto_ack = True
            proc = await start_agent(broker, uid, password, tmp_path, data_dir)
            await eventually(lambda: len(server.unique_events(uid)) == 3, timeout=25, what="proof")
            await eventually(lambda: query(data_dir, "SELECT seq FROM outbox") == [], timeout=10)
            await stop(proc, tmp_path)
        finally:
            await server.stop()
        events = server.unique_events(uid)
        assert [(s, e.item_id, e.outcome) for s, e in sorted(events.items())] == [
            (1, "p@1", "played"),
            (2, "p@2", "failed"),
            (3, "p@3", "played"),
        ]
        assert events[2].reason == "interrupted: the agent stopped during playback"
        assert events[2].resumed_at_s is None
        assert abs(events[2].actual_start - second.timestamp()) < 0.1  # type: ignore[operator]
        assert abs(events[3].actual_start - third.timestamp()) < 0.1  # type: ignore[operator]

    run(scenario(), timeout=90)


RATE = 48_000


def wav_from(path: Path, offset: int) -> np.ndarray:
    """The file sink's WAV samples from `offset` on."""
    with wave.open(str(path), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")[offset:]


def locate(segment: np.ndarray, reference: np.ndarray) -> int:
    """The sample of `reference` where `segment` begins (FFT cross-correlation)."""
    size = 1 << (len(reference) + len(segment)).bit_length()
    spectrum = np.fft.rfft(reference.astype(np.float64), size) * np.conj(
        np.fft.rfft(segment.astype(np.float64), size)
    )
    correlation = np.fft.irfft(spectrum, size)[: len(reference) - len(segment) + 1]
    return int(np.argmax(correlation))


def test_a_kill_mid_item_and_a_restart_within_its_slot_resume_it_at_the_right_sample(
    broker: TestBroker, tmp_path: Path
) -> None:
    """The probe's case: killed 5 s into a 17.8 s clip, restarted 5 s later."""
    uid = new_device_id()
    password = broker.add_device(uid, zone_ids=(7,))
    clips = tmp_path / "clips"
    clip = noise_clip(clips, seconds=17.8, seed=11)  # noise: every stretch is unique
    reference = decode_to_pcm(clips / "noise-11.opus")
    data_dir = tmp_path / "data"
    sim = data_dir / "sim"
    first_run = tmp_path / "first-run"
    times: dict[str, Any] = {}

    async def scenario() -> None:
        server = ServerDouble(broker, [uid])
        await server.start()
        try:
            state = DesiredState(version=1, volume=50, zone_ids=[7])
            await server.publish_raw(uid, TopicKind.STATE, encode(state))
            proc = await start_agent(broker, uid, password, tmp_path, data_dir)
            await asyncio.sleep(1.0)
            start = times["start"] = at(6)
            await server.publish_schedule(document(uid, 1, [item("p@1", start, [clip])]))
            await server.publish_zone_clip(7, clip)
            await eventually(lambda: bool(heard(data_dir, "p@1")), timeout=15, what="p@1")
            await asyncio.sleep(start.timestamp() + 5 - time.time())
            await kill(proc, tmp_path)
            times["killed"] = time.time()
            shutil.copytree(sim, first_run)  # the restarted sink writes its files anew
            await asyncio.sleep(times["killed"] + 5 - time.time())
            times["restarted"] = time.time()
            proc = await start_agent(broker, uid, password, tmp_path, data_dir)
            end = start.timestamp() + clip.duration_s
            await eventually(
                lambda: bool(server.events(uid)), timeout=end - time.time() + 10, what="proof"
            )
            await asyncio.sleep(2 * 2.0)  # two resend periods: a duplicate would show by now
            await stop(proc, tmp_path)
            times["events"] = server.events(uid)
        finally:
            await server.stop()

    run(scenario(), timeout=120)
    planned: float = times["start"].timestamp()
    # The first run started on time and was killed about 5 s in.
    [before] = [r for r in map(json.loads, (first_run / "plays.jsonl").read_text().splitlines())
                if r["event"] == "item"]  # fmt: skip
    assert abs(before["start_wall"] - planned) < 0.05
    # The restarted run's one segment: where in the item its first sample is, from the
    # recorded audio, against where the item should be at the instant the sink heard it.
    [after] = heard(data_dir, "p@1")
    assert after["start_wall"] > times["restarted"], "nothing of p@1 played after the restart"
    resumed = wav_from(sim / "output.wav", after["sample_offset"])
    found = locate(resumed[:RATE], reference)
    should = (after["start_wall"] - planned) * RATE
    assert abs(found - should) < 0.05 * RATE, (found / RATE, should / RATE)
    assert np.array_equal(resumed[:RATE], reference[found : found + RATE])
    # It plays on to the planned end: the rest of the clip, and no more.
    assert abs(found + len(resumed) - len(reference)) < 0.02 * RATE
    # One proof of play for the item (resends carry the same seq), saying what happened.
    events: list[PlayEvent] = times["events"]
    assert len({e.seq for e in events}) == 1, events
    proof = events[0]
    assert (proof.item_id, proof.outcome) == ("p@1", "played")
    assert proof.resumed_at_s is not None and abs(proof.resumed_at_s * RATE - found) < 0.05 * RATE
    assert proof.reason.startswith("interrupted by an agent restart; resumed in step at ")
    assert proof.actual_start is not None and abs(proof.actual_start - planned) < 0.05
    assert proof.ended_at is not None
    assert abs(proof.ended_at - (planned + clip.duration_s)) < 0.05
