"""An item cut by an agent restart rejoins in step, on virtual time (the player's decision).

The real process killed with SIGKILL and restarted is in tests/integration/test_agent_crash.py.
Here the earlier run's state is handed to a fresh player as the runtime does after a restart;
the clips are pink noise, so the recorded samples say exactly where in the item they are.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import numpy as np
import pytest

from audio.decode import decode_to_pcm
from edge_agent.playback import INTERRUPTED, Interrupted
from loa_testkit.playfix import Clip, item
from schedules import Priority
from tests.edge_agent.test_player import RATE, START_WALL, make_rig, play, wav_samples


def noise_clip(directory: Path, *, seconds: float, seed: int) -> Clip:
    """Ogg/Opus pink noise: no two stretches alike, unlike a tone."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"noise-{seed}.opus"
    source = f"anoisesrc=d={seconds}:c=pink:r=48000:a=0.3:seed={seed}"
    subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", source,
            "-ac", "1", "-c:a", "libopus", "-b:a", "48k", str(path),
        ],
        check=True,
    )  # fmt: skip
    data = path.read_bytes()
    return Clip(data, hashlib.sha256(data).hexdigest(), seconds)


@pytest.fixture(scope="module")
def noise(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Clip]:
    """long: 4 s, short: 1 s."""
    where = tmp_path_factory.mktemp("noise")
    return {
        "long": noise_clip(where, seconds=4, seed=7),
        "short": noise_clip(where, seconds=1, seed=8),
    }


def item_audio(path: Path, *, from_s: float, samples: int) -> np.ndarray:
    """What the item sounds like from `from_s` on, decoded as the player decodes it."""
    start = round(from_s * RATE)
    return decode_to_pcm(path)[start : start + samples]


def test_inside_its_slot_the_item_rejoins_at_the_sample_it_would_have_reached(
    tmp_path: Path, noise: dict[str, Clip]
) -> None:
    clip = noise["long"]
    rig = make_rig(tmp_path, [clip])
    it = item("n@1", rig.wall(-3), [clip])
    # The run that died began it 3 s ago from its start.
    rig.player.rejoin("n@1", Interrupted(START_WALL - 3, 0.0, START_WALL - 3))
    play(rig, [it], for_s=3)
    # Picked up 0.5 s after the restart (decode time), 3.5 s into the item, to its planned end.
    assert rig.items_heard() == [("n@1", 0.5, 0)]
    samples = wav_samples(tmp_path / "out.wav")[960:]
    assert len(samples) == RATE // 2 and np.abs(samples).max() > 1000  # noise, not silence
    expected = item_audio(rig.cache.path(clip.sha256), from_s=3.5, samples=len(samples))
    assert np.array_equal(samples[: len(expected)], expected)
    outcome = rig.log.of("n@1")
    assert outcome.outcome == "played" and outcome.resumed_at_s == 3.5
    assert outcome.reason == "interrupted by an agent restart; resumed in step at 3.5 s of 4.0 s"
    assert outcome.actual_start == START_WALL - 3  # the first sample the earlier run played
    assert outcome.ended_at is not None and abs(outcome.ended_at - (START_WALL + 1)) < 1e-6
    assert rig.log.starts == {}  # its start was recorded by the run that died
    assert rig.log.aired == [("n@1", 3.5, START_WALL + 0.5)]


def test_a_segment_resumed_after_a_preemption_rejoins_from_its_own_start(
    tmp_path: Path, noise: dict[str, Clip]
) -> None:
    clip = noise["long"]
    rig = make_rig(tmp_path, [clip])
    it = item("n@1", rig.wall(-3), [clip])
    # The dying run had resumed it 1 s ago from 1.2 s (after an emergency).
    rig.player.rejoin("n@1", Interrupted(START_WALL - 3, 1.2, START_WALL - 1))
    play(rig, [it], for_s=4)
    samples = wav_samples(tmp_path / "out.wav")[960:]
    assert len(samples) == round(1.3 * RATE)  # 2.7 s to 4 s
    expected = item_audio(rig.cache.path(clip.sha256), from_s=2.7, samples=len(samples))
    assert np.array_equal(samples[: len(expected)], expected)
    assert rig.log.of("n@1").resumed_at_s == 2.7


@pytest.mark.parametrize("grace_s", [300.0, 0.0])
def test_once_its_audio_would_be_over_it_is_reported_interrupted_as_before(
    tmp_path: Path, noise: dict[str, Clip], grace_s: float
) -> None:
    clip = noise["long"]
    rig = make_rig(tmp_path, [clip], slot_grace_s=grace_s)
    it = item("n@1", rig.wall(-10), [clip])  # ended 6 s ago (its slot too when grace_s = 0)
    rig.player.rejoin("n@1", Interrupted(START_WALL - 10, 0.0, START_WALL - 10))
    play(rig, [it], for_s=3)
    outcome = rig.log.of("n@1")
    assert (outcome.outcome, outcome.reason) == ("failed", INTERRUPTED)
    assert outcome.actual_start == START_WALL - 10 and outcome.resumed_at_s is None
    assert rig.items_heard() == [] and not (tmp_path / "out.wav").exists()
    assert rig.hardware.actions("amplifier") == []


def test_a_clip_no_longer_in_the_cache_is_named_and_nothing_plays(
    tmp_path: Path, noise: dict[str, Clip]
) -> None:
    clip = noise["long"]
    rig = make_rig(tmp_path, [])  # evicted or lost while the agent was down
    it = item("n@1", rig.wall(-1), [clip])
    rig.player.rejoin("n@1", Interrupted(START_WALL - 1, 0.0, START_WALL - 1))
    play(rig, [it], for_s=3)
    outcome = rig.log.of("n@1")
    assert outcome.outcome == "failed" and outcome.actual_start == START_WALL - 1
    assert outcome.reason == (
        f"{INTERRUPTED}; not resumed: clip {clip.sha256} is no longer in the cache"
    )
    assert rig.items_heard() == [] and rig.log.outcomes == [outcome]


def test_a_rejoined_item_can_still_be_preempted_and_keeps_one_truthful_proof(
    tmp_path: Path, noise: dict[str, Clip]
) -> None:
    long, short = noise["long"], noise["short"]
    rig = make_rig(tmp_path, [long, short])
    normal = item("n@1", rig.wall(-2), [long])
    urgent = item("e@1", rig.wall(1.5), [short], priority=Priority.EMERGENCY)
    rig.player.rejoin("n@1", Interrupted(START_WALL - 2, 0.0, START_WALL - 2))
    play(rig, [normal, urgent], for_s=6)
    # n rejoins at 0.5 (2.5 s in), e cuts it at 1.5 (3.5 s in), n ends 2.5 to 3.0.
    assert rig.items_heard() == [("n@1", 0.5, 0), ("e@1", 1.5, RATE), ("n@1", 2.5, 2 * RATE)]
    assert rig.log.aired == [
        ("n@1", 2.5, START_WALL + 0.5),
        ("n@1", None, START_WALL + 0.5),  # suspended: a restart now must not pick it up
        ("e@1", 0.0, START_WALL + 1.5),
        ("n@1", 3.5, START_WALL + 2.5),
    ]
    outcome = rig.log.of("n@1")
    assert outcome.outcome == "played" and outcome.resumed_at_s == 2.5
    assert outcome.reason == (
        "interrupted by an agent restart; resumed in step at 2.5 s of 4.0 s; "
        "resumed after a preemption"
    )
    assert [o.item.item_id for o in rig.log.outcomes] == ["e@1", "n@1"]
