"""The stand-ins behave like the services they replace, seen by httpx and Authlib's clients.

Each test talks to a stand-in (tests/standins/) over real HTTP on 127.0.0.1: the OAuth
flows through Authlib's client classes (OAuth2Client, AsyncOAuth2Client, OAuth1Client),
the API calls through httpx, checking the paths, status codes, bodies, headers and
rate limits the services document.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
import warnings
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import httpx
import pytest
from authlib.common.errors import AuthlibBaseError
from authlib.oauth2.rfc6749 import MismatchingStateException
from standins import MastodonStandIn, TrelloStandIn, WallabagStandIn

with warnings.catch_warnings():
    # Authlib 1.9 prefers the httpx2 package and warns when it falls back to httpx.
    warnings.simplefilter("ignore", DeprecationWarning)
    from authlib.integrations.httpx_client import (
        AsyncOAuth2Client,
        OAuth1Client,
        OAuth2Client,
        OAuthError,
    )


CALLBACK = "http://127.0.0.1:9/callback"  # never requested: the tests read Location


def link_targets(header: str | None) -> dict[str, dict[str, str]]:
    """``rel`` -> query parameters of each URL in a Link header."""
    found: dict[str, dict[str, str]] = {}
    for part in (header or "").split(","):
        if not part.strip():
            continue
        url, _, rel = part.partition(";")
        name = rel.split("=", 1)[1].strip().strip('"')
        found[name] = dict(parse_qsl(urlsplit(url.strip().strip("<>")).query))
    return found


# -- the base: serving, recording, failures ---------------------------------------------


def test_serves_on_loopback_records_and_closes() -> None:
    standin = WallabagStandIn()
    assert standin.url.startswith("http://127.0.0.1:")
    port = int(standin.url.rsplit(":", 1)[1])
    started = time.monotonic()
    with standin:
        r = httpx.post(
            f"{standin.url}/oauth/v2/token?x=1",
            data={"grant_type": "password"},
            headers={"X-Test": "yes"},
        )
        assert r.status_code == 400
        (recorded,) = standin.requests
        assert (recorded.method, recorded.path, recorded.query) == (
            "POST",
            "/oauth/v2/token",
            "x=1",
        )
        assert recorded.headers["x-test"] == "yes"
        assert recorded.form() == {"grant_type": "password"}
        assert standin.count("/oauth/*") == 1
    assert time.monotonic() - started < 5
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_fail_next_then_recover(wallabag: WallabagStandIn) -> None:
    wallabag.fail_next(2, 503, path="/api/*")
    wallabag.fail_next(1, 429, headers={"Retry-After": "1"}, method="GET")
    token = wallabag.issue_token()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    statuses = [httpx.get(f"{wallabag.url}/api/entries.json", headers=auth) for _ in range(4)]
    assert [r.status_code for r in statuses] == [503, 503, 429, 200]
    assert statuses[0].json() == {"code": 503, "message": "Service Unavailable"}
    assert statuses[2].headers["retry-after"] == "1"


# -- Mastodon ----------------------------------------------------------------------------


def register(mastodon: MastodonStandIn, scopes: str = "read write") -> dict[str, Any]:
    r = httpx.post(
        f"{mastodon.url}/api/v1/apps",
        data={"client_name": "triggerflow", "redirect_uris": CALLBACK, "scopes": scopes},
    )
    assert r.status_code == 200, r.text
    return r.json()


def mastodon_client(mastodon: MastodonStandIn, app: dict[str, Any], **kwargs: Any) -> Any:
    settings = {"redirect_uri": CALLBACK, "scope": "read write", **kwargs}
    return OAuth2Client(
        client_id=app["client_id"],
        client_secret=app["client_secret"],
        code_challenge_method="S256",
        **settings,
    )


def authorize(mastodon: MastodonStandIn, client: Any) -> tuple[str, str, str]:
    """Run the browser's part: (redirect Location, state, code verifier)."""
    verifier = secrets.token_urlsafe(64)
    url, state = client.create_authorization_url(
        f"{mastodon.url}/oauth/authorize", code_verifier=verifier
    )
    r = httpx.get(url, follow_redirects=False)
    assert r.status_code == 302, r.text
    return r.headers["location"], state, verifier


def test_mastodon_app_authorization_code_pkce(mastodon: MastodonStandIn) -> None:
    app = register(mastodon)
    assert app["redirect_uris"] == [CALLBACK] and app["scopes"] == ["read", "write"]
    assert {"id", "name", "client_id", "client_secret", "redirect_uri"} <= set(app)
    client = mastodon_client(mastodon, app)
    location, state, verifier = authorize(mastodon, client)
    assert location.startswith(CALLBACK + "?")
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == [state] and len(query["code"][0]) >= 43

    token = client.fetch_token(
        f"{mastodon.url}/oauth/token", authorization_response=location, code_verifier=verifier
    )
    assert token["token_type"] == "Bearer" and token["scope"] == "read write"
    assert isinstance(token["created_at"], int)
    assert "refresh_token" not in token and "expires_in" not in token  # real Mastodon
    sent = mastodon.requests_to("/oauth/token")[-1].form()
    assert sent["grant_type"] == "authorization_code" and sent["code_verifier"] == verifier

    me = client.get(f"{mastodon.url}/api/v1/accounts/verify_credentials")
    assert me.status_code == 200 and me.json()["username"] == "tester"
    assert "source" in me.json()

    with pytest.raises(OAuthError) as error:  # a code is good once
        client.fetch_token(
            f"{mastodon.url}/oauth/token", authorization_response=location, code_verifier=verifier
        )
    assert error.value.error == "invalid_grant"


def test_mastodon_authorization_rejections(mastodon: MastodonStandIn) -> None:
    app = register(mastodon, "read")
    base = {"response_type": "code", "client_id": app["client_id"], "state": "s1"}
    challenge = {"code_challenge": "A" * 43, "code_challenge_method": "S256"}

    def get(**params: str) -> httpx.Response:
        return httpx.get(f"{mastodon.url}/oauth/authorize?{urlencode(params)}")

    # An unregistered redirect URI is never redirected to: an error page.
    r = get(**base, **challenge, redirect_uri="http://127.0.0.1:9/elsewhere")
    assert r.status_code == 400 and "location" not in r.headers
    r = get(**{**base, "client_id": "nobody"}, **challenge, redirect_uri=CALLBACK)
    assert r.status_code == 400 and "location" not in r.headers

    def redirected(r: httpx.Response) -> dict[str, str]:
        assert r.status_code == 302 and r.headers["location"].startswith(CALLBACK)
        return dict(parse_qsl(urlsplit(r.headers["location"]).query))

    missing = redirected(get(**base, redirect_uri=CALLBACK))
    assert missing["error"] == "invalid_request" and missing["state"] == "s1"
    plain = redirected(
        get(**base, redirect_uri=CALLBACK, code_challenge="A" * 43, code_challenge_method="plain")
    )
    assert plain["error"] == "invalid_request"
    no_method = redirected(get(**base, redirect_uri=CALLBACK, code_challenge="A" * 43))
    assert no_method["error"] == "invalid_request"
    scope = redirected(get(**base, **challenge, redirect_uri=CALLBACK, scope="read write"))
    assert scope["error"] == "invalid_scope"

    mastodon.approve = False
    denied = redirected(get(**base, **challenge, redirect_uri=CALLBACK))
    assert denied["error"] == "access_denied" and denied["state"] == "s1"
    mastodon.approve = True

    # The right code with the wrong verifier: invalid_grant, Doorkeeper's wording.
    client = mastodon_client(mastodon, app, scope="read")
    location, _, _ = authorize(mastodon, client)
    with pytest.raises(OAuthError) as error:
        client.fetch_token(
            f"{mastodon.url}/oauth/token",
            authorization_response=location,
            code_verifier=secrets.token_urlsafe(64),
        )
    assert error.value.error == "invalid_grant"
    assert "authorization grant is invalid" in (error.value.description or "")

    bad = httpx.post(
        f"{mastodon.url}/oauth/token",
        data={"grant_type": "authorization_code", "code": "x", "client_id": app["client_id"]},
    )
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"


def test_mastodon_forged_state_reaches_the_client(mastodon: MastodonStandIn) -> None:
    app = register(mastodon)
    client = mastodon_client(mastodon, app)
    verifier = secrets.token_urlsafe(64)
    url, state = client.create_authorization_url(
        f"{mastodon.url}/oauth/authorize", code_verifier=verifier
    )
    forged = url.replace(f"state={state}", "state=forged")
    location = httpx.get(forged).headers["location"]
    assert parse_qs(urlsplit(location).query)["state"] == ["forged"]  # passed through as is
    with pytest.raises(MismatchingStateException):
        client.fetch_token(
            f"{mastodon.url}/oauth/token",
            authorization_response=location,
            state=state,
            code_verifier=verifier,
        )


def test_mastodon_refresh_and_revoke() -> None:
    # Authlib's client refreshes when a token has less than 60 s left (its "leeway"):
    # a shorter lifetime would make it refresh before every call.
    with MastodonStandIn(refresh_tokens=True, token_lifetime=600) as mastodon:
        app = register(mastodon)
        updates: list[dict[str, Any]] = []
        client = mastodon_client(
            mastodon,
            app,
            token_endpoint=f"{mastodon.url}/oauth/token",
            update_token=lambda token, **_: updates.append(token),
        )
        location, _, verifier = authorize(mastodon, client)
        first = client.fetch_token(authorization_response=location, code_verifier=verifier)
        assert first["expires_in"] == 600 and first["refresh_token"]

        mastodon.advance(601)
        expired = httpx.get(
            f"{mastodon.url}/api/v1/timelines/home",
            headers={"Authorization": f"Bearer {first['access_token']}"},
        )
        assert expired.status_code == 401
        assert expired.json() == {"error": "The access token expired"}
        assert 'error="invalid_token"' in expired.headers["www-authenticate"]

        # Authlib refreshes by itself before the call (expires_at is in the past for it
        # too, on the real clock, once told so).
        client.token = {**first, "expires_at": int(time.time()) - 1}
        r = client.get(f"{mastodon.url}/api/v1/timelines/home")
        assert r.status_code == 200 and len(updates) == 1
        second = updates[0]
        assert second["refresh_token"] != first["refresh_token"]
        with pytest.raises(OAuthError) as error:
            client.refresh_token(refresh_token=first["refresh_token"])
        assert error.value.error == "invalid_grant"

        client.revoke_token(f"{mastodon.url}/oauth/revoke", token=second["access_token"])
        revoked = client.get(f"{mastodon.url}/api/v1/timelines/home")
        assert revoked.status_code == 401
        assert revoked.json() == {"error": "The access token was revoked"}


def test_mastodon_async_client(mastodon: MastodonStandIn) -> None:
    app = register(mastodon)

    async def flow() -> tuple[dict[str, Any], int]:
        async with AsyncOAuth2Client(
            client_id=app["client_id"],
            client_secret=app["client_secret"],
            redirect_uri=CALLBACK,
            scope="read write",
            code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_post",
        ) as client:
            verifier = secrets.token_urlsafe(64)
            url, _ = client.create_authorization_url(
                f"{mastodon.url}/oauth/authorize", code_verifier=verifier
            )
            # Authlib's clients want a token for every call; the browser's step has none.
            # withhold_token exists on request() only (httpx's get() has a fixed signature).
            browser = await client.request("GET", url, withhold_token=True)
            location = browser.headers["location"]
            token = await client.fetch_token(
                f"{mastodon.url}/oauth/token",
                authorization_response=location,
                code_verifier=verifier,
            )
            r = await client.post(f"{mastodon.url}/api/v1/statuses", data={"status": "async"})
            return token, r.status_code

    token, status = asyncio.run(flow())
    assert token["access_token"] and status == 200
    assert mastodon.requests_to("/oauth/token")[-1].form()["client_secret"]  # post auth
    assert mastodon.posted[-1]["application"]["name"] == "triggerflow"


def test_mastodon_home_and_tag_timelines_page_by_status_id(mastodon: MastodonStandIn) -> None:
    token = mastodon.issue_token()
    auth = {"Authorization": f"Bearer {token}"}
    ids = [mastodon.add_status(f"post {i} #news")["id"] for i in range(5)]
    home = f"{mastodon.url}/api/v1/timelines/home"

    first = httpx.get(home, params={"limit": 2}, headers=auth)
    assert [s["id"] for s in first.json()] == [ids[4], ids[3]]
    links = link_targets(first.headers["link"])
    assert links["next"] == {"limit": "2", "max_id": ids[3]}
    assert links["prev"] == {"limit": "2", "min_id": ids[4]}
    second = httpx.get(home, params=links["next"], headers=auth)
    assert [s["id"] for s in second.json()] == [ids[2], ids[1]]
    last = httpx.get(home, params={"limit": 2, "max_id": ids[1]}, headers=auth)
    assert [s["id"] for s in last.json()] == [ids[0]]
    assert "next" not in link_targets(last.headers["link"])  # a short page: the end

    newer = httpx.get(home, params={"min_id": ids[1], "limit": 2}, headers=auth)
    assert [s["id"] for s in newer.json()] == [ids[3], ids[2]]  # just above min_id
    since = httpx.get(home, params={"since_id": ids[1], "limit": 2}, headers=auth)
    assert [s["id"] for s in since.json()] == [ids[4], ids[3]]  # newest above since_id

    tag = httpx.get(f"{mastodon.url}/api/v1/timelines/tag/news")  # public: no token
    assert [s["id"] for s in tag.json()] == list(reversed(ids))
    status = tag.json()[0]
    assert status["tags"] == [{"name": "news", "url": f"{mastodon.url}/tags/news"}]
    assert status["content"].startswith("<p>post 4 ")
    assert {"id", "created_at", "url", "account", "visibility", "spoiler_text"} <= set(status)
    assert datetime.fromisoformat(status["created_at"].replace("Z", "+00:00"))


def test_mastodon_favourites_page_only_through_link(mastodon: MastodonStandIn) -> None:
    token = mastodon.issue_token()
    auth = {"Authorization": f"Bearer {token}"}
    statuses = [mastodon.add_status(f"fav {i}", home=False)["id"] for i in range(3)]
    fav_ids = [mastodon.favourite(sid) for sid in (statuses[2], statuses[0], statuses[1])]
    url = f"{mastodon.url}/api/v1/favourites"

    first = httpx.get(url, params={"limit": 2}, headers=auth)
    assert [s["id"] for s in first.json()] == [statuses[1], statuses[0]]  # last favourited
    assert all(s["favourited"] for s in first.json())
    links = link_targets(first.headers["link"])
    assert links["next"]["max_id"] == str(fav_ids[1])  # a favourite id, not a status id
    assert links["next"]["max_id"] not in statuses
    second = httpx.get(url, params=links["next"], headers=auth)
    assert [s["id"] for s in second.json()] == [statuses[2]]

    # A status id as max_id does not page: it is larger than every favourite id.
    wrong = httpx.get(url, params={"limit": 2, "max_id": statuses[0]}, headers=auth)
    assert [s["id"] for s in wrong.json()] == [statuses[1], statuses[0]]


def test_mastodon_notifications_mentions(mastodon: MastodonStandIn) -> None:
    token = mastodon.issue_token()
    auth = {"Authorization": f"Bearer {token}"}
    mention = mastodon.add_mention("have a look", author="bob@other.example")
    liked = mastodon.add_status("mine", author="tester")
    mastodon.add_notification("favourite", status_id=liked["id"])
    r = httpx.get(
        f"{mastodon.url}/api/v1/notifications", params={"types[]": "mention"}, headers=auth
    )
    (only,) = r.json()
    assert only["id"] == mention["id"] and only["type"] == "mention"
    assert only["account"]["acct"] == "bob@other.example"
    assert only["status"]["mentions"][0]["username"] == "tester"
    assert "@tester have a look" in only["status"]["content"]
    assert link_targets(r.headers["link"])["prev"] == {"types[]": "mention", "min_id": only["id"]}
    everything = httpx.get(f"{mastodon.url}/api/v1/notifications", headers=auth).json()
    assert [n["type"] for n in everything] == ["favourite", "mention"]


def test_mastodon_post_status_idempotency_and_validation() -> None:
    with MastodonStandIn(max_characters=40) as mastodon:
        token = mastodon.issue_token()
        auth = {"Authorization": f"Bearer {token}"}
        instance = httpx.get(f"{mastodon.url}/api/v2/instance").json()
        statuses = instance["configuration"]["statuses"]
        assert statuses["max_characters"] == 40 and statuses["characters_reserved_per_url"] == 23
        url = f"{mastodon.url}/api/v1/statuses"

        sent = {"status": "Read this", "visibility": "unlisted", "spoiler_text": "cw"}
        first = httpx.post(url, data=sent, headers={**auth, "Idempotency-Key": "k-1"})
        again = httpx.post(url, data=sent, headers={**auth, "Idempotency-Key": "k-1"})
        assert first.status_code == again.status_code == 200
        assert first.json()["id"] == again.json()["id"] and len(mastodon.posted) == 1
        assert first.json()["visibility"] == "unlisted" and first.json()["spoiler_text"] == "cw"
        other = httpx.post(url, data=sent, headers={**auth, "Idempotency-Key": "k-2"})
        assert other.json()["id"] != first.json()["id"] and len(mastodon.posted) == 2
        as_json = httpx.post(url, json={"status": "json body"}, headers=auth)
        assert as_json.status_code == 200

        blank = httpx.post(url, data={"status": "  "}, headers=auth)
        assert blank.status_code == 422
        assert blank.json() == {"error": "Validation failed: Text can't be blank"}
        # A URL counts 23 characters whatever its length: 17 + 23 = 40 fits.
        fits = "a" * 16 + " https://example.org/" + "x" * 60
        assert httpx.post(url, data={"status": fits}, headers=auth).status_code == 200
        long = httpx.post(url, data={"status": "a" * 41}, headers=auth)
        assert long.status_code == 422
        assert long.json() == {"error": "Validation failed: Text character limit of 40 exceeded"}
        reply = httpx.post(url, data={"status": "re", "in_reply_to_id": "1"}, headers=auth)
        assert reply.status_code == 404


def test_mastodon_errors_and_rate_limit() -> None:
    with MastodonStandIn(rate_limit=300, rate_period=300) as mastodon:
        home = f"{mastodon.url}/api/v1/timelines/home"
        missing = httpx.get(home)
        assert missing.status_code == 401
        assert missing.json() == {"error": "The access token is invalid"}
        read_only = mastodon.issue_token(scope="read")
        forbidden = httpx.post(
            f"{mastodon.url}/api/v1/statuses",
            data={"status": "x"},
            headers={"Authorization": f"Bearer {read_only}"},
        )
        assert forbidden.status_code == 403
        assert forbidden.json() == {"error": "This action is outside the authorized scopes"}
        gone = httpx.get(f"{mastodon.url}/api/v1/statuses/12345")
        assert gone.status_code == 404 and gone.json() == {"error": "Record not found"}

        auth = {"Authorization": f"Bearer {read_only}"}
        mastodon.set_remaining(1)
        ok = httpx.get(home, headers=auth)
        assert ok.status_code == 200
        assert ok.headers["x-ratelimit-limit"] == "300"
        assert ok.headers["x-ratelimit-remaining"] == "0"
        limited = httpx.get(home, headers=auth)
        assert limited.status_code == 429
        assert limited.json() == {"error": "Too many requests"}
        reset = datetime.fromisoformat(limited.headers["x-ratelimit-reset"].replace("Z", "+00:00"))
        assert 0 < reset.timestamp() - mastodon.now() <= 300
        mastodon.advance(reset.timestamp() - mastodon.now() + 0.01)
        again = httpx.get(home, headers=auth)
        assert again.status_code == 200 and again.headers["x-ratelimit-remaining"] == "299"


# -- Wallabag ----------------------------------------------------------------------------


def wallabag_client(wallabag: WallabagStandIn, **kwargs: Any) -> Any:
    return OAuth2Client(
        client_id=wallabag.client.client_id,
        client_secret=wallabag.client.client_secret,
        token_endpoint_auth_method="client_secret_post",
        token_endpoint=f"{wallabag.url}/oauth/v2/token",
        **kwargs,
    )


def test_wallabag_password_grant_and_refresh_rotation(wallabag: WallabagStandIn) -> None:
    client = wallabag_client(wallabag)
    token = client.fetch_token(username="wallabag", password="wallabag")
    assert token["token_type"] == "bearer" and token["expires_in"] == 3600
    assert token["scope"] is None and token["refresh_token"]
    sent = wallabag.requests_to("/oauth/v2/token")[-1].form()
    assert sent["grant_type"] == "password" and sent["client_secret"]  # client_secret_post
    assert client.get(f"{wallabag.url}/api/entries.json").status_code == 200

    new = client.refresh_token()
    assert new["refresh_token"] != token["refresh_token"]
    assert wallabag.refreshed_tokens == [{k: new[k] for k in wallabag.refreshed_tokens[0]}]
    with pytest.raises(OAuthError) as error:  # rotated: the old refresh token is gone
        client.refresh_token(refresh_token=token["refresh_token"])
    assert (error.value.error, error.value.description) == (
        "invalid_grant",
        "Invalid refresh token",
    )

    wallabag.advance(3601)
    expired = httpx.get(
        f"{wallabag.url}/api/entries.json",
        headers={"Authorization": f"Bearer {new['access_token']}"},
    )
    assert expired.status_code == 401
    assert expired.json() == {
        "error": "invalid_grant",
        "error_description": "The access token provided has expired.",
    }
    wallabag.advance(14 * 86400)
    with pytest.raises(OAuthError) as error:
        client.refresh_token(refresh_token=new["refresh_token"])
    assert error.value.description == "Refresh token has expired"


def test_wallabag_token_errors(wallabag: WallabagStandIn) -> None:
    url = f"{wallabag.url}/oauth/v2/token"
    good = {
        "grant_type": "password",
        "client_id": wallabag.client.client_id,
        "client_secret": wallabag.client.client_secret,
        "username": "wallabag",
        "password": "wallabag",
    }
    cases = {
        "password": ({"password": "nope"}, "invalid_grant"),
        "client": ({"client_secret": "nope"}, "invalid_client"),
        "scope": ({"scope": "read"}, "invalid_scope"),
        "grant": ({"grant_type": "implicit"}, "invalid_request"),
        "missing": ({"password": ""}, "invalid_request"),
    }
    for name, (change, error) in cases.items():
        r = httpx.post(url, data={**good, **change})
        assert (r.status_code, r.json()["error"]) == (400, error), name
    by_email = httpx.post(url, data={**good, "username": "wallabag@example.org"})
    assert by_email.status_code == 200
    by_get = httpx.get(url, params=good)  # oauth2-php reads GET parameters too
    assert by_get.status_code == 200
    bad = httpx.post(url, data={**good, "password": "nope"}).json()
    assert bad["error_description"] == "Invalid username and password combination"


def test_wallabag_post_existing_url_returns_the_entry(wallabag: WallabagStandIn) -> None:
    auth = {"Authorization": f"Bearer {wallabag.issue_token()['access_token']}"}
    url = f"{wallabag.url}/api/entries.json"
    first = httpx.post(
        url,
        data={"url": "https://example.org/a/story.html", "tags": "News, python", "starred": "1"},
        headers=auth,
    )
    assert first.status_code == 200
    entry = first.json()
    assert entry["url"] == "https://example.org/a/story.html"
    assert entry["title"] == "story.html"  # nothing fetched: the URL's basename
    assert [t["label"] for t in entry["tags"]] == ["news", "python"]
    assert entry["is_starred"] == 1 and entry["starred_at"] and entry["is_archived"] == 0
    assert entry["domain_name"] == "example.org"
    assert entry["created_at"].endswith("+0000")

    again = httpx.post(
        url, json={"url": "https://example.org/a/story.html", "archive": True}, headers=auth
    )
    assert again.status_code == 200 and again.json()["id"] == entry["id"]
    assert again.json()["is_archived"] == 1 and len(wallabag.entries()) == 1
    assert len(wallabag.saved) == 2
    exists = httpx.get(
        f"{wallabag.url}/api/entries/exists.json",
        params={"url": "https://example.org/a/story.html"},
        headers=auth,
    )
    assert exists.json() == {"exists": True}
    with_id = httpx.get(
        f"{wallabag.url}/api/entries/exists.json",
        params={"url": "https://example.org/other", "return_id": "1"},
        headers=auth,
    )
    assert with_id.json() == {"exists": None}

    wallabag.set_page("https://example.org/b", "A fetched title", "<p>one two</p>")
    fetched = httpx.post(url, data={"url": "https://example.org/b"}, headers=auth).json()
    assert fetched["title"] == "A fetched title" and fetched["content"] == "<p>one two</p>"


def test_wallabag_list_since_updated_paging(wallabag: WallabagStandIn) -> None:
    auth = {"Authorization": f"Bearer {wallabag.issue_token()['access_token']}"}
    t0 = 1_700_000_000
    old = wallabag.add_entry("https://example.org/old", created_at=t0, tags=["a"])
    for i in range(3):
        wallabag.add_entry(f"https://example.org/{i}", created_at=t0 + 100 + i, tags=["a", "b"])
    url = f"{wallabag.url}/api/entries.json"

    since = httpx.get(url, params={"since": t0 + 50}, headers=auth).json()
    assert since["total"] == 3 and old["id"] not in [e["id"] for e in since["_embedded"]["items"]]
    wallabag.update_entry(old["id"], starred=True, at=t0 + 200)  # updated, not created, later
    since = httpx.get(url, params={"since": t0 + 150, "starred": 1}, headers=auth).json()
    assert [e["id"] for e in since["_embedded"]["items"]] == [old["id"]]

    page = httpx.get(
        url,
        params={"perPage": 2, "page": 1, "sort": "created", "order": "asc", "tags": "a,b"},
        headers=auth,
    ).json()
    assert (page["page"], page["limit"], page["pages"], page["total"]) == (1, 2, 2, 3)
    assert [e["url"] for e in page["_embedded"]["items"]] == [
        "https://example.org/0",
        "https://example.org/1",
    ]
    assert set(page["_links"]) == {"self", "first", "last", "next"}
    next_page = httpx.get(page["_links"]["next"]["href"], headers=auth).json()
    assert [e["url"] for e in next_page["_embedded"]["items"]] == ["https://example.org/2"]
    metadata = httpx.get(url, params={"detail": "metadata"}, headers=auth).json()
    assert all("content" not in e for e in metadata["_embedded"]["items"])
    beyond = httpx.get(url, params={"page": 9}, headers=auth)
    assert beyond.status_code == 404


def test_wallabag_api_errors(wallabag: WallabagStandIn) -> None:
    url = f"{wallabag.url}/api/entries.json"
    missing = httpx.get(url)
    assert missing.status_code == 401
    assert missing.json() == {
        "error": "access_denied",
        "error_description": "OAuth2 authentication required",
    }
    wrong = httpx.get(url, params={"access_token": "nope"})
    assert wrong.status_code == 401
    assert wrong.json()["error_description"] == "The access token provided is invalid."
    token = wallabag.issue_token()["access_token"]
    assert httpx.get(url, params={"access_token": token}).status_code == 200
    nothing = httpx.get(f"{wallabag.url}/api/entries/99.json", params={"access_token": token})
    assert nothing.status_code == 404 and nothing.json()["code"] == 404


# -- Trello ------------------------------------------------------------------------------


def test_trello_token_in_fragment(trello: TrelloStandIn) -> None:
    params = {
        "expiration": "never",
        "name": "triggerflow",
        "scope": "read,write",
        "response_type": "token",
        "key": trello.api_key,
        "return_url": CALLBACK,
        "callback_method": "fragment",
    }
    r = httpx.get(f"{trello.url}/1/authorize", params=params)
    assert r.status_code == 302
    location = urlsplit(r.headers["location"])
    assert location.query == "" and location.fragment.startswith("token=")
    token = dict(parse_qsl(location.fragment))["token"]
    assert trello.tokens[token].expires_at is None and trello.tokens[token].scopes == {
        "read",
        "write",
    }
    me = httpx.get(f"{trello.url}/1/members/me", params={"key": trello.api_key, "token": token})
    assert me.status_code == 200 and me.json()["username"] == "tester"

    shown = httpx.get(f"{trello.url}/1/authorize", params={**params, "return_url": ""})
    assert shown.status_code == 200 and "<pre>" in shown.text
    with TrelloStandIn(allowed_origins=["https://app.example"]) as strict:
        refused = httpx.get(f"{strict.url}/1/authorize", params={**params, "key": strict.api_key})
        assert refused.status_code == 400 and "Invalid return_url" in refused.text


def test_trello_oauth1(trello: TrelloStandIn) -> None:
    client = OAuth1Client(trello.api_key, trello.api_secret, redirect_uri=CALLBACK)
    request_token = client.fetch_request_token(f"{trello.url}/1/OAuthGetRequestToken")
    assert request_token["oauth_callback_confirmed"] == "true"
    url = client.create_authorization_url(
        f"{trello.url}/1/OAuthAuthorizeToken",
        name="triggerflow",
        scope="read,write",
        expiration="never",
    )
    r = httpx.get(url)
    assert r.status_code == 302 and r.headers["location"].startswith(CALLBACK)
    client.parse_authorization_response(r.headers["location"])
    access = client.fetch_access_token(f"{trello.url}/1/OAuthGetAccessToken")
    assert access["oauth_token"] in trello.tokens and access["oauth_token_secret"]

    me = client.get(f"{trello.url}/1/members/me")  # signed: Authorization: OAuth ...
    assert me.status_code == 200 and me.json()["username"] == "tester"
    assert trello.requests[-1].headers["authorization"].startswith("OAuth ")

    forged = OAuth1Client(trello.api_key, "wrong-secret", redirect_uri=CALLBACK)
    with pytest.raises(AuthlibBaseError):
        forged.fetch_request_token(f"{trello.url}/1/OAuthGetRequestToken")
    assert trello.count("/1/OAuthGetRequestToken") == 2


def test_trello_cards_and_board_actions(trello: TrelloStandIn) -> None:
    board = trello.add_board("Reading")
    todo = trello.lists(board["id"])[0]
    token = trello.issue_token()
    auth = {"key": trello.api_key, "token": token}
    seeded = trello.add_card(todo["id"], "from the web", by="alice")

    r = httpx.post(
        f"{trello.url}/1/cards",
        params={
            **auth,
            "idList": todo["id"],
            "name": "Read later",
            "desc": "why",
            "urlSource": "https://example.org/x",
            "pos": "top",
        },
    )
    assert r.status_code == 200
    card = r.json()
    assert card["idList"] == todo["id"] and card["idBoard"] == board["id"]
    assert card["name"] == "Read later" and card["desc"] == "why"
    assert card["shortUrl"].endswith(card["shortLink"]) and card["url"].startswith(card["shortUrl"])
    assert trello.created_cards == [card]
    oauth_header = {
        "Authorization": f'OAuth oauth_consumer_key="{trello.api_key}", oauth_token="{token}"'
    }
    newest = httpx.post(
        f"{trello.url}/1/cards", json={"idList": todo["id"], "name": "third"}, headers=oauth_header
    )
    assert newest.status_code == 200

    actions_url = f"{trello.url}/1/boards/{board['id']}/actions"
    actions = httpx.get(actions_url, params={**auth, "filter": "createCard"}).json()
    assert [a["data"]["card"]["name"] for a in actions] == [
        "third",
        "Read later",
        "from the web",
    ]
    action = actions[-1]
    assert action["type"] == "createCard" and action["memberCreator"]["username"] == "alice"
    assert action["data"]["card"] == {
        "id": seeded["id"],
        "name": "from the web",
        "idShort": seeded["idShort"],
        "shortLink": seeded["shortLink"],
    }
    assert action["data"]["list"] == {"id": todo["id"], "name": "To Do"}
    assert action["data"]["board"]["shortLink"] == board["shortLink"]
    assert action["idMemberCreator"] == action["memberCreator"]["id"]

    since = httpx.get(actions_url, params={**auth, "since": actions[1]["id"]}).json()
    assert [a["id"] for a in since] == [actions[0]["id"]]
    before = httpx.get(actions_url, params={**auth, "before": actions[1]["id"]}).json()
    assert [a["id"] for a in before] == [actions[2]["id"]]
    limited = httpx.get(actions_url, params={**auth, "limit": 1}).json()
    assert [a["id"] for a in limited] == [actions[0]["id"]]
    by_date = httpx.get(actions_url, params={**auth, "since": "2000-01-01T00:00:00.000Z"})
    assert len(by_date.json()) == 3
    other = httpx.get(actions_url, params={**auth, "filter": "commentCard"}).json()
    assert other == []


def test_trello_errors_are_plain_text(trello: TrelloStandIn) -> None:
    board = trello.add_board()
    token = trello.issue_token()
    auth = {"key": trello.api_key, "token": token}

    def check(r: httpx.Response, status: int, text: str) -> None:
        assert (r.status_code, r.text) == (status, text)
        assert r.headers["content-type"].startswith("text/plain")

    me = f"{trello.url}/1/members/me"
    check(httpx.get(me), 401, "invalid key")
    check(httpx.get(me, params={"key": trello.api_key, "token": "f" * 64}), 401, "invalid token")
    check(httpx.get(me, params={"key": trello.api_key}), 401, "unauthorized permission requested")
    check(httpx.post(f"{trello.url}/1/cards", params=auth), 400, "invalid value for idList")
    check(
        httpx.post(f"{trello.url}/1/cards", params={**auth, "idList": "0" * 24}),
        400,
        "invalid value for idList",
    )
    check(httpx.get(f"{trello.url}/1/boards/nope", params=auth), 400, "invalid id")
    check(
        httpx.get(f"{trello.url}/1/boards/{'a' * 24}", params=auth),
        404,
        "The requested resource was not found.",
    )
    check(httpx.get(f"{trello.url}/1/lists/{'a' * 24}", params=auth), 404, "model not found")
    check(httpx.get(f"{trello.url}/1/nothing", params=auth), 404, "Cannot GET /1/nothing")
    read_only = {"key": trello.api_key, "token": trello.issue_token(scope="read")}
    list_id = trello.lists(board["id"])[0]["id"]
    check(
        httpx.post(f"{trello.url}/1/cards", params={**read_only, "idList": list_id}),
        401,
        "unauthorized permission requested",
    )
    trello.expire_tokens()
    check(httpx.get(me, params=auth), 401, "expired token")


def test_trello_rate_limits() -> None:
    with TrelloStandIn(token_limit=3, rate_interval=10) as trello:
        auth = {"key": trello.api_key, "token": trello.issue_token()}
        me = f"{trello.url}/1/members/me"
        statuses = [httpx.get(me, params=auth).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        limited = httpx.get(me, params=auth)
        assert limited.json() == {
            "error": "API_TOKEN_LIMIT_EXCEEDED",
            "message": "Rate limit exceeded",
        }
        assert "retry-after" not in limited.headers
        assert not any(h.startswith("x-rate-limit") for h in limited.headers)
        trello.advance(10)
        assert httpx.get(me, params=auth).status_code == 200
        other = {"key": trello.api_key, "token": trello.issue_token()}
        trello.set_remaining(0, limit="key")
        by_key = httpx.get(me, params=other)
        assert by_key.status_code == 429 and by_key.json()["error"] == "API_KEY_LIMIT_EXCEEDED"
