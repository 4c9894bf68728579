"""Clip use cases: the row, its audit entry and its files, with the request's one commit.

Called directly with sessions of the running app, so the test decides when each commits.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from loa_testkit.stack import Stack
from server.access.actor import Actor, load_actor
from server.audit.models import AuditEntry
from server.clips import service
from server.clips.models import Clip
from server.clips.storage import ClipStorage, sha256_file
from server.clips.upload import ReceivedUpload
from server.users.models import User

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three seconds of a speech-like tone, made with ffmpeg."""
    path = tmp_path_factory.mktemp("media") / "speech.wav"
    subprocess.run(
        [
            *("ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i"),
            "aevalsrc='0.4*sin(2*PI*(180+40*sin(2*PI*3*t))*t)':s=44100:d=3",
            str(path),
        ],
        check=True,
    )
    return path


def _storage(api: Stack) -> ClipStorage:
    return ClipStorage(api.settings.data_dir / "clips")


def _actor(db: Session) -> Actor:
    user = db.scalar(select(User).where(User.username == "admin"))
    assert user is not None
    return load_actor(db, user=user, ip="192.0.2.9", via_cookie=False)


def _received(storage: ClipStorage, audio: Path) -> ReceivedUpload:
    """The audio as the upload route hands it over: a temp file in the store."""
    tmp = storage.temp_path(".upload")
    shutil.copyfile(audio, tmp)
    return ReceivedUpload(
        file_path=tmp,
        fields={"title": "Bản tin"},
        filename=audio.name,
        size=tmp.stat().st_size,
        sha256=sha256_file(tmp),
    )


def _upload(api: Stack, db: Session, audio: Path) -> tuple[Clip, bool]:
    storage = _storage(api)
    return service.upload(
        db,
        actor=_actor(db),
        storage=storage,
        settings=api.settings,
        received=_received(storage, audio),
    )


def _counts(api: Stack) -> tuple[int, int]:
    with api.app.state.session_factory() as db:
        clips = db.scalar(select(func.count()).select_from(Clip)) or 0
        audits = (
            db.scalar(
                select(func.count())
                .select_from(AuditEntry)
                .where(AuditEntry.action == "clip.create")
            )
            or 0
        )
    return clips, audits


def test_the_row_and_its_audit_entry_wait_for_the_callers_commit(api: Stack, speech: Path) -> None:
    storage = _storage(api)
    factory = api.app.state.session_factory
    with factory() as db:
        clip, created = _upload(api, db, speech)
        assert created
        assert _counts(api) == (0, 0)  # nothing committed inside the use case
        db.commit()
        clip_id, sha = clip.id, clip.sha256
    assert _counts(api) == (1, 1)
    audio = api.client.get(f"/api/v1/clips/{clip_id}/audio", headers=api.headers)
    assert audio.status_code == 200
    assert audio.headers["etag"] == f'"{sha}"'
    assert sha256_file(storage.dist_path(sha)) == sha
    assert list(storage.tmp_dir.iterdir()) == []


def test_a_rolled_back_upload_leaves_no_row_no_audit_and_only_a_complete_file(
    api: Stack, speech: Path
) -> None:
    storage = _storage(api)
    factory = api.app.state.session_factory
    with factory() as db:
        clip, created = _upload(api, db, speech)
        sha = clip.sha256
        assert created
        db.rollback()  # the request's commit never happened (it failed, or the process died)
    assert _counts(api) == (0, 0)
    # What was moved into the store before the commit is the whole clip, unreferenced.
    assert sha256_file(storage.dist_path(sha)) == sha
    assert list(storage.tmp_dir.iterdir()) == []
    # The same audio again makes its clip (the original was not taken as already stored).
    with factory() as db:
        clip, created = _upload(api, db, speech)
        db.commit()
        clip_id = clip.id
    assert created
    assert _counts(api) == (1, 1)
    audio = api.client.get(f"/api/v1/clips/{clip_id}/audio", headers=api.headers)
    assert audio.status_code == 200
    assert audio.headers["etag"] == f'"{clip.sha256}"'
