"""Publishes clip chunks on the event loop, paced by a bound on unacknowledged messages."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter

from protocol import SPECS, TopicKind, device_topic, zone_clip_topic
from protocol.clipchunk import CHUNK_SIZE, Chunk, chunk_count, encode_chunk
from protocol.mqtt_client import MqttLink, Outgoing, PublishError
from protocol.topics import ZONE_CLIP_QOS

log = logging.getLogger(__name__)
QUEUE_LIMIT = 10_000


@dataclass(frozen=True)
class ClipJob:
    """Chunks of one clip for one destination: a zone (all chunks) or a device (some or all)."""

    sha256: str
    zone_id: int | None = None
    device_uid: str | None = None
    chunks: tuple[int, ...] | None = None  # None = every chunk

    @property
    def target(self) -> str:
        """'zone' or 'device' (the metrics label)."""
        return "zone" if self.zone_id is not None else "device"

    def topic(self) -> str:
        """Where this job's chunks go."""
        if self.zone_id is not None:
            return zone_clip_topic(self.zone_id, self.sha256)
        assert self.device_uid is not None
        return device_topic(self.device_uid, TopicKind.CLIP)


class SenderMetrics:
    """Counters of what the clip distribution sent."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.bytes_sent = Counter(
            "loa_clip_bytes_sent", "clip chunk bytes published (payload incl. header), by target",
            ["target"], registry=registry,
        )  # fmt: skip
        self.chunks_sent = Counter(
            "loa_clip_chunks_sent", "clip chunks published, by target", ["target"],
            registry=registry,
        )  # fmt: skip
        self.jobs_failed = Counter(
            "loa_clip_jobs_failed", "clip publications abandoned, by target and reason",
            ["target", "reason"], registry=registry,
        )  # fmt: skip

    def sent_bytes(self, target: str) -> float:
        """Bytes sent so far to one target kind ('zone' or 'device')."""
        value = self.registry.get_sample_value("loa_clip_bytes_sent_total", {"target": target})
        return value or 0.0


class ClipSender:
    """Two workers on the loop (zone publications, device requests), each with bounded in-flight."""

    def __init__(
        self,
        *,
        link: MqttLink,
        clip_path: Callable[[str], Path],
        metrics: SenderMetrics,
        inflight: int = 8,
        on_zone_published: Callable[[int, str], None] | None = None,
        ack_timeout: float = 30.0,
    ) -> None:
        self.link = link
        self.clip_path = clip_path
        self.metrics = metrics
        self.inflight = max(1, inflight)
        self.on_zone_published = on_zone_published
        self.ack_timeout = ack_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queues: dict[str, asyncio.Queue[ClipJob]] = {}
        self._pending: set[ClipJob] = set()  # queued or in progress, for de-duplication
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start the workers on the running loop."""
        self._loop = asyncio.get_running_loop()
        for target in ("zone", "device"):
            queue: asyncio.Queue[ClipJob] = asyncio.Queue(QUEUE_LIMIT)
            self._queues[target] = queue
            self._tasks.append(asyncio.create_task(self._work(queue), name=f"clips-{target}"))

    async def stop(self) -> None:
        """Stop the workers (a publication in progress is abandoned and retried later)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    def submit(self, job: ClipJob) -> None:
        """Queue a job (callable from any thread); a job already pending is not queued twice."""
        if self._loop is None:
            log.warning("clip sender not started; %s for %s dropped", job.sha256[:12], job.target)
            return
        self._loop.call_soon_threadsafe(self._enqueue, job)

    def _enqueue(self, job: ClipJob) -> None:
        if job in self._pending:
            return
        try:
            self._queues[job.target].put_nowait(job)
        except asyncio.QueueFull:
            self.metrics.jobs_failed.labels(job.target, "overload").inc()
            log.warning("clip queue full: %s for %s dropped", job.sha256[:12], job.target)
            return
        self._pending.add(job)

    async def _work(self, queue: asyncio.Queue[ClipJob]) -> None:
        while True:
            job = await queue.get()
            try:
                done = await self._send(job)
                if done and job.zone_id is not None and self.on_zone_published is not None:
                    # Recorded before the job leaves _pending, so a planner pass in between
                    # cannot queue the same publication again.
                    await asyncio.to_thread(self.on_zone_published, job.zone_id, job.sha256)
            except Exception:
                log.exception("clip job %s for %s failed", job.sha256[:12], job.target)
            finally:
                self._pending.discard(job)

    async def _send(self, job: ClipJob) -> bool:
        path = self.clip_path(job.sha256)
        try:
            fd = await asyncio.to_thread(os.open, path, os.O_RDONLY)
        except OSError:
            self.metrics.jobs_failed.labels(job.target, "missing_file").inc()
            log.error("clip %s has no file at %s; cannot publish it", job.sha256, path)
            return False
        try:
            size = os.fstat(fd).st_size
            count = chunk_count(size)
            indices = sorted({i for i in (job.chunks or range(count)) if 0 <= i < count})
            return await self._publish_chunks(job, fd, count, indices)
        finally:
            os.close(fd)

    async def _publish_chunks(
        self, job: ClipJob, fd: int, count: int, indices: Iterable[int]
    ) -> bool:
        topic = job.topic()
        qos = ZONE_CLIP_QOS if job.zone_id is not None else SPECS[TopicKind.CLIP].qos
        slots = asyncio.Semaphore(self.inflight)
        in_flight: set[asyncio.Task[None]] = set()
        failed: list[BaseException] = []

        async def publish(payload: bytes) -> None:
            try:
                await self.link.publish_wait(
                    Outgoing(topic, payload, qos=qos, retain=False), timeout=self.ack_timeout
                )
                self.metrics.bytes_sent.labels(job.target).inc(len(payload))
                self.metrics.chunks_sent.labels(job.target).inc()
            except PublishError as exc:
                failed.append(exc)
            finally:
                slots.release()

        try:
            for index in indices:
                await slots.acquire()  # the pacing: at most `inflight` chunks unacknowledged
                if failed:
                    slots.release()
                    break
                data = await asyncio.to_thread(os.pread, fd, CHUNK_SIZE, index * CHUNK_SIZE)
                payload = encode_chunk(Chunk(job.sha256, index, count, data))
                task = asyncio.create_task(publish(payload))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            await asyncio.gather(*in_flight)
        except BaseException:
            for task in in_flight:
                task.cancel()
            raise
        if failed:
            self.metrics.jobs_failed.labels(job.target, "unacknowledged").inc()
            log.warning("clip %s to %s abandoned: %s", job.sha256[:12], topic, failed[0])
            return False
        return True
