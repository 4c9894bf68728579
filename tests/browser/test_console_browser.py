"""The console in a real browser (headless Chromium), against a real server and broker."""

from __future__ import annotations

import io
import math
import re
import struct
import time
import wave
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from protocol import Ack, Birth, Command, Telemetry, TopicKind, decode, device_topic, encode
from tests.browser.conftest import PHONE, LiveServer, shot, signed_in


def tone_wav(seconds: float, freq: float, rate: int = 16000) -> bytes:
    """A real WAV file: a tone that fades in, so the waveform has a visible shape."""
    frames = bytearray()
    n = int(seconds * rate)
    for i in range(n):
        envelope = min(1.0, i / (0.4 * n))
        frames += struct.pack("<h", int(14000 * envelope * math.sin(2 * math.pi * freq * i / rate)))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))
    return buf.getvalue()


def wait(pred: Callable[[], bool], timeout: float = 15.0) -> bool:
    """Poll until pred() holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return pred()


def test_sign_in_language_switch_and_sign_out(chromium: Any, live_server: LiveServer) -> None:
    context = chromium.new_context(viewport=PHONE, base_url=live_server.base_url)
    page = context.new_page()
    page.goto("/devices")
    assert page.url.endswith("/login?next=/devices")
    assert page.inner_text("h1") == "Đăng nhập"
    shot(page, "01-login")
    page.fill("input[name=username]", "kythuat")
    page.fill("input[name=password]", "sai-mat-khau")
    page.click("button[type=submit]")
    assert page.inner_text("[role=alert]") == "Sai tên đăng nhập hoặc mật khẩu."
    page.fill("input[name=username]", "kythuat")
    page.fill("input[name=password]", "mat-khau-thu-1")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.base_url}/devices")
    assert page.inner_text("h1") == "Cụm loa"
    cookies = {c["name"]: c for c in context.cookies()}
    assert cookies["loa_session"]["httpOnly"] and cookies["loa_session"]["sameSite"] == "Lax"
    assert page.evaluate("document.cookie").find("loa_session") == -1  # invisible to scripts
    page.click("a[href^='/lang/en']")
    assert page.inner_text("h1") == "Devices"
    assert page.is_visible("text=Sign out")
    page.click("a[href^='/lang/vi']")
    assert page.inner_text("h1") == "Cụm loa"
    page.click("text=Đăng xuất")
    page.wait_for_url(f"{live_server.base_url}/login")
    page.goto("/devices")
    assert "/login" in page.url
    context.close()


def test_upload_a_clip_see_its_waveform_play_it_and_find_it_listed(
    chromium: Any, live_server: LiveServer
) -> None:
    page = signed_in(chromium, live_server, "bientap")
    progress: list[int] = []
    page.expose_function("loaProgress", lambda value: progress.append(int(value)))
    # Report what the progress bar shows at each upload progress event.
    page.add_init_script("""(() => {
        const send = XMLHttpRequest.prototype.send;
        XMLHttpRequest.prototype.send = function (body) {
            this.upload.addEventListener('progress', () => {
                const bar = document.getElementById('upload-progress');
                if (bar && !bar.hidden) window.loaProgress(bar.value);
            });
            return send.call(this, body);
        };
    })()""")
    page.goto("/clips")
    page.click("#upload-box summary")
    page.fill("#upload-form input[name=title]", "Thông báo lịch tiêm phòng")
    page.select_option("#upload-form select[name=topic]", "health")
    page.set_input_files(
        "#upload-form input[type=file]",
        files=[{"name": "tiem-phong.wav", "mimeType": "audio/wav", "buffer": tone_wav(4.0, 330.0)}],
    )
    page.click("#upload-form button[type=submit]")
    # The progress bar shows while the file goes up; then the clip page opens.
    page.wait_for_url(re.compile(r".*/clips/\d+$"))
    assert progress and progress[-1] == 100, progress
    assert page.inner_text("h1") == "Thông báo lịch tiêm phòng"
    painted = page.evaluate("""() => {
        const c = document.getElementById('waveform');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
        return n; }""")
    assert painted > 1000, painted
    duration = page.evaluate("""() => new Promise(resolve => {
        const a = document.getElementById('clip-audio');
        if (a.readyState >= 1) resolve(a.duration);
        a.addEventListener('loadedmetadata', () => resolve(a.duration));
        a.addEventListener('error', () => resolve(-1)); a.load(); })""")
    assert 3.5 < duration < 4.5, duration  # the browser decoded the normalised Ogg/Opus
    shot(page, "04-clip")
    page.goto("/clips")
    assert page.is_visible("#clip-list >> text=Thông báo lịch tiêm phòng")
    shot(page, "03-clips")


def test_create_submit_and_approve_a_programme(chromium: Any, live_server: LiveServer) -> None:
    clip = live_server.admin.post("/api/v1/clips", files={"file": ("tin.wav", tone_wav(
        2.0, 440.0), "audio/wav")}, data={"title": "Bản tin thời sự"})  # fmt: skip
    assert clip.status_code in (200, 201), clip.text
    editor = signed_in(chromium, live_server, "bientap")
    editor.goto("/programmes/new")
    editor.fill("input[name=title]", "Bản tin sáng thứ Hai")
    editor.check("text=Bản tin thời sự")
    editor.check("#programme-form >> text=Loa Xã An Bình")
    tomorrow = (datetime.now(UTC) + timedelta(days=1, hours=7)).date().isoformat()
    # Typed as Vietnamese write dates, whatever the browser's language (issue 11).
    editor.fill("input[name=date]", date.fromisoformat(tomorrow).strftime("%d/%m/%Y"))
    editor.fill("input[name=time]", "06:30")
    editor.click("#check-button")
    editor.wait_for_selector("#conflicts .ok")
    assert editor.inner_text("#conflicts .ok") == "Không trùng lịch."
    shot(editor, "06-programme-new")
    editor.click("#submit-button")
    editor.wait_for_url(re.compile(r".*/programmes/\d+$"))
    assert editor.is_visible("text=Chờ duyệt")
    programme_url = editor.url
    approver = signed_in(chromium, live_server, "duyet")
    approver.goto("/approvals")
    assert approver.is_visible("text=Bản tin sáng thứ Hai")
    shot(approver, "07-approvals")
    approver.click(".approval >> text=Duyệt")
    approver.wait_for_selector("text=Không có chương trình nào chờ duyệt.")
    approver.goto(programme_url)
    assert approver.is_visible(".badge.st-approved")
    shot(approver, "08-programme-approved")
    zone = live_server.ids["a_zone"]
    editor.goto(f"/programmes?zone_id={zone}&week={tomorrow}")
    assert editor.is_visible(".week >> text=Bản tin sáng thứ Hai")
    shot(editor, "05-programmes-week")


def test_a_commune_operator_sees_only_their_communes_devices(
    chromium: Any, live_server: LiveServer
) -> None:
    page = signed_in(chromium, live_server, "trucphat")
    page.goto("/devices")
    text = page.inner_text("main")
    assert "a-cum-01" in text and "a-cum-02" in text
    assert "b-cum-01" not in text and "Bình Minh" not in text
    response = page.goto(f"/devices/{live_server.ids['b_device']}")
    assert response is not None and response.status == 404
    assert page.inner_text("h1") == "Không tìm thấy"
    api = page.evaluate(
        f"fetch('/api/v1/devices/{live_server.ids['b_device']}').then(r => r.status)"
    )
    assert api == 404
    page.goto("/")
    assert not page.is_visible("text=Chờ duyệt")  # no approvals menu for operators
    shot(page, "02-dashboard")


def test_the_device_page_shows_a_simulated_devices_telemetry_and_command_acks(
    chromium: Any, live_server: LiveServer
) -> None:
    n = live_server.next()
    uid = f"a-mo-phong-{n}"
    body = {
        "uid": uid,
        "name": "Cụm loa chợ An Bình",
        "org_unit_id": live_server.ids["a_village"],
        "firmware_profile": "sim",
        "zone_ids": [live_server.ids["a_zone"]],
    }
    answer = live_server.api("POST", "/devices", body, expect=201)
    device_id = answer["device"]["id"]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=uid, protocol=mqtt.MQTTv5)
    client.username_pw_set(uid, answer["credentials"]["password"])
    commands: list[Command] = []

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        command = decode(TopicKind.COMMAND, msg.payload)
        assert isinstance(command, Command)
        commands.append(command)
        ack = Ack(id=command.id, ok=True, detail="đã phát tiếng thử 3 giây")
        client.publish(device_topic(uid, TopicKind.ACK), encode(ack), qos=1)

    client.on_message = on_message
    client.connect("127.0.0.1", live_server.settings.mqtt_port, keepalive=10)
    client.loop_start()
    try:
        client.subscribe(device_topic(uid, TopicKind.COMMAND), 1)
        birth = Birth(conn_id="c1", agent_version="0.1.0", firmware_profile="sim", boot_time=0)
        client.publish(device_topic(uid, TopicKind.STATUS), encode(birth), qos=1, retain=True)
        sample = Telemetry(
            uptime_s=7200,
            load_1m=0.35,
            mem_used_pct=38,
            disk_free_mb=5400,
            disk_used_pct=31,
            cpu_temp_c=51.5,
            signal_dbm=-79,
            signal_source="modem",
            agent_version="0.1.0",
            firmware_profile="sim",
        )
        client.publish(
            device_topic(uid, TopicKind.TELEMETRY), encode(sample), qos=1
        ).wait_for_publish(5)
        assert wait(
            lambda: (
                (live_server.api("GET", f"/devices/{device_id}")["telemetry"] or {}).get(
                    "cpu_temp_c"
                )
                == 51.5
            )
        )
        page = signed_in(chromium, live_server, "kythuat")
        page.goto(f"/devices/{device_id}")
        main = page.inner_text("main")
        assert "Đang hoạt động" in main and "51.5 °C" in main and "-79 dBm" in main
        page.wait_for_selector("#telemetry-chart[data-points='1']")
        page.click("[data-command=test_tone]")
        page.wait_for_selector("#command-table tr[data-status=ok]")
        row = page.inner_text("#command-table tr[data-status=ok]")
        assert "Đã thực hiện" in row and "đã phát tiếng thử 3 giây" in row
        assert commands and commands[0].name == "test_tone" and commands[0].args == {"seconds": 3}
        shot(page, "09-device")
        page.goto("/devices")
        assert page.is_visible(f"text={uid}")
        shot(page, "10-devices")
        page.set_viewport_size({"width": 1280, "height": 900})
        page.goto(f"/devices/{device_id}")
        page.wait_for_selector("#telemetry-chart[data-points='1']")
        shot(page, "11-device-desktop")
    finally:
        client.loop_stop()
        client.disconnect()


def test_the_report_page_and_its_csv(chromium: Any, live_server: LiveServer) -> None:
    page = signed_in(chromium, live_server, "duyet")
    zone = live_server.ids["a_zone"]
    page.goto(f"/reports?zone_id={zone}")
    assert page.is_visible("text=Tải về (CSV)")
    href = page.get_attribute("text=Tải về (CSV)", "href")
    assert href is not None
    csv_text = page.evaluate(f"fetch({href!r}).then(r => r.text())")
    assert csv_text.lstrip("\ufeff").startswith("zone,device,programme_id")
    shot(page, "12-report")
