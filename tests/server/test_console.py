"""The console over HTTP: session cookie, CSRF, sign-in limits, pages, language, reach."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from server.console.catalogue import CATALOGUE
from tests.server.test_permissions_fixtures import PASSWORD, PermWorld


def browser(w: PermWorld) -> TestClient:
    """A cookie-keeping client on https (the session cookie is Secure)."""
    return TestClient(w.stack.app, base_url="https://testserver")


def sign_in(w: PermWorld, username: str, password: str = PASSWORD) -> TestClient:
    """A browser signed in through the console's form."""
    client = browser(w)
    form = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token is not None
    r = client.post(
        "/login",
        data={"username": username, "password": password, "csrf": token.group(1), "next": "/"},
    )
    assert r.status_code == 200 and r.url.path == "/", r.text[:300]
    return client


def csrf_of(client: TestClient, path: str = "/") -> str:
    """The CSRF token a console page carries."""
    found = re.search(r'<meta name="csrf-token" content="([^"]+)"', client.get(path).text)
    assert found is not None
    return found.group(1)


def test_sign_in_sets_a_secure_http_only_lax_cookie(perm_world: PermWorld) -> None:
    client = browser(perm_world)
    r = client.get("/devices", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/devices"
    form = client.get("/login?next=/devices")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token is not None
    r = client.post(
        "/login",
        follow_redirects=False,
        data={
            "username": "technician-a",
            "password": PASSWORD,
            "csrf": token.group(1),
            "next": "/devices",
        },
    )
    assert r.status_code == 303 and r.headers["location"] == "/devices"
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("loa_session="))
    attributes = {part.strip().lower() for part in cookie.split(";")}
    assert {"httponly", "secure", "samesite=lax", "path=/"} <= attributes
    page = client.get("/devices")
    assert page.status_code == 200 and "Cụm loa" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]


def test_the_sign_in_form_needs_its_token_and_says_what_went_wrong(perm_world: PermWorld) -> None:
    client = browser(perm_world)
    r = client.post("/login", data={"username": "viewer-a", "password": PASSWORD, "csrf": "x"})
    assert r.status_code == 403 and "đã hết hạn" in r.text
    for _ in range(5):
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)
        assert token is not None
        r = client.post(
            "/login",
            data={"username": "viewer-a", "password": "sai-mat-khau", "csrf": token.group(1)},
        )
        assert r.status_code == 401 and "Sai tên đăng nhập hoặc mật khẩu" in r.text
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)
    assert token is not None
    r = client.post(
        "/login", data={"username": "viewer-a", "password": PASSWORD, "csrf": token.group(1)}
    )
    assert r.status_code == 429 and "Đăng nhập sai quá nhiều lần" in r.text


def test_the_cookie_authenticates_api_reads_and_writes_need_the_csrf_header(
    perm_world: PermWorld,
) -> None:
    w = perm_world
    assert w.a is not None
    client = sign_in(w, "editor-a")
    audio = client.get(f"/api/v1/clips/{w.a.clip}/audio")
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/ogg"
    body = {"text": "Kính mời bà con đi họp.", "title": "Họp thôn"}
    r = client.post("/api/v1/clips/tts", json=body)
    assert r.status_code == 403 and "CSRF" in r.json()["detail"]
    r = client.post("/api/v1/clips/tts", json=body, headers={"X-CSRF-Token": "0" * 64})
    assert r.status_code == 403
    r = client.post("/api/v1/clips/tts", json=body, headers={"X-CSRF-Token": csrf_of(client)})
    assert r.status_code == 201, r.text
    # Another session's token does not fit this session.
    other = sign_in(w, "editor-a")
    r = client.post(
        "/api/v1/clips/tts", json={**body, "text": "Khác"}, headers={"X-CSRF-Token": csrf_of(other)}
    )
    assert r.status_code == 403


def test_sign_out_revokes_the_session(perm_world: PermWorld) -> None:
    client = sign_in(perm_world, "viewer-a")
    session = client.cookies.get("loa_session")
    assert session
    r = client.post("/logout", data={"csrf": "wrong"})
    assert r.status_code == 403
    r = client.post("/logout", data={"csrf": csrf_of(client)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    stolen = browser(perm_world)
    stolen.cookies.set("loa_session", session)
    assert stolen.get("/api/v1/users/me").status_code == 401
    assert stolen.get("/", follow_redirects=False).status_code == 303


def test_redirects_stay_on_this_site(perm_world: PermWorld) -> None:
    client = browser(perm_world)
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        r = client.get(f"/lang/en?next={target}", follow_redirects=False)
        assert r.headers["location"] == "/"
        r = client.get("/login", params={"next": target})
        assert 'name="next" value="/"' in r.text


def test_every_page_renders_in_both_languages_with_every_string_translated(
    perm_world: PermWorld,
) -> None:
    w = perm_world
    assert w.a is not None
    programme = w.programme(w.a, status="submitted")
    client = sign_in(w, "admin-a")
    pages = [
        "/",
        "/devices",
        f"/devices/{w.a.device}",
        "/clips",
        f"/clips/{w.a.clip}",
        "/programmes",
        f"/programmes?zone_id={w.a.zone}",
        "/programmes/new",
        f"/programmes/{programme}",
        "/approvals",
        "/reports",
        f"/reports?zone_id={w.a.zone}",
        "/live",
        "/users",
        "/audit",
    ]
    raw_key = re.compile(r">\s*([a-z_]+\.[a-z_]+(?:\.[a-z_]+)?)\s*<")
    for lang, word in (("vi", "Đăng xuất"), ("en", "Sign out")):
        client.get(f"/lang/{lang}")
        for path in pages:
            r = client.get(path)
            assert r.status_code == 200, (path, r.text[:300])
            assert word in r.text, (lang, path)
            assert not raw_key.findall(r.text), (lang, path, raw_key.findall(r.text))


def test_catalogue_covers_every_key_the_templates_and_code_use() -> None:
    root = Path(__file__).resolve().parents[2] / "server"
    used: set[str] = set()
    prefixes: set[str] = set()
    for path in [*root.glob("templates/*.html"), *root.glob("console/*.py")]:
        text = path.read_text()
        used |= set(re.findall(r"""\bt\(\s*["']([a-z_]+(?:\.[a-z_0-9]+)+)["']""", text))
        prefixes |= set(re.findall(r"""\bt\(\s*["']([a-z_]+\.(?:[a-z_]+\.)*)["']\s*~""", text))
        used |= set(re.findall(r"""["']((?:login|error)\.[a-z_]+)["']""", text)) - {
            "login.html",
            "error.html",
        }
    missing = sorted(k for k in used if k not in CATALOGUE)
    assert not missing, missing
    for prefix in prefixes:
        assert any(k.startswith(prefix) for k in CATALOGUE), prefix
    for key, (vi, en) in CATALOGUE.items():
        assert vi.strip() and en.strip(), key
        assert re.findall(r"{\w+}", vi) == re.findall(r"{\w+}", en) or sorted(
            re.findall(r"{\w+}", vi)
        ) == sorted(re.findall(r"{\w+}", en)), key
    # Values a page looks up by prefix: every one has its entry.
    from server.clips.schemas import TOPICS
    from server.programmes.models import STATUSES
    from server.users.models import ROLES

    for family, values in (("topic", TOPICS), ("status", STATUSES), ("role", ROLES)):
        for value in values:
            assert f"{family}.{value}" in CATALOGUE, (family, value)


def test_pages_show_only_the_callers_subtree(perm_world: PermWorld) -> None:
    w = perm_world
    assert w.a is not None and w.b is not None
    client = sign_in(w, "operator-a")
    devices = client.get("/devices").text
    assert f"/devices/{w.a.device}" in devices and f"/devices/{w.b.device}" not in devices
    r = client.get(f"/devices/{w.b.device}")
    assert r.status_code == 404 and "Không tìm thấy" in r.text
    assert client.get(f"/clips/{w.b.clip}").status_code == 404
    foreign = w.programme(w.b)
    assert client.get(f"/programmes/{foreign}").status_code == 404
    assert client.get(f"/reports?zone_id={w.b.zone}").status_code == 404
    assert client.get("/approvals").status_code == 403  # operators do not approve
    assert "/approvals" not in client.get("/").text
