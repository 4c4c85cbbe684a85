"""The JSON API of every example service, over real HTTP, on memory and on Redis.

Users: 1 is bob, 2 carol, 3 dave, 4 erin (names from the Pinterest demo).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from aiostream import Activity, AggregatedActivity, NotificationActivity
from examples.web.service import Config
from tests.examples.conftest import serve
from tests.servers import start_redis

pytestmark = pytest.mark.anyio


async def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


async def follow(client: httpx.AsyncClient, user: int, target: int) -> Any:
    return await ok(await client.post(f"/api/users/{user}/following", json={"target_id": target}))


async def pin(client: httpx.AsyncClient, user: int, title: str, board: str = "Kitchen") -> Any:
    data = await ok(
        await client.post(f"/api/users/{user}/pins", json={"board": board, "title": title}), 201
    )
    return data["pin"]


async def read(client: httpx.AsyncClient, user: int, feed: str, **params: Any) -> Any:
    return await ok(await client.get(f"/api/users/{user}/{feed}", params=params))


async def counts(client: httpx.AsyncClient, user: int) -> dict[str, int]:
    data: dict[str, int] = await ok(await client.get(f"/api/users/{user}/notifications/counts"))
    return data


async def test_health_and_page(client: httpx.AsyncClient, config: Config) -> None:
    assert await ok(await client.get("/healthz")) == {"status": "ok", "backend": config.backend}
    response = await client.get("/")
    assert response.status_code == 303
    assert response.headers["location"] == "/users/1"
    page = await client.get("/users/1")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'id="unseen-count"' in page.text
    assert "/api/users/${userId}" in page.text


async def test_ready_when_every_server_answers(client: httpx.AsyncClient) -> None:
    assert await ok(await client.get("/ready")) == {"ready": True}


@pytest.mark.redis
async def test_ready_is_a_503_naming_a_stopped_redis(framework: str, tmp_path: Path) -> None:
    # A redis-server of this test's own, so that stopping it leaves the session's alone.
    server = start_redis(tmp_path / "private")
    try:
        async with (
            serve(framework, Config(redis_url=server.url)) as url,
            httpx.AsyncClient(base_url=url) as client,
        ):
            assert await ok(await client.get("/ready")) == {"ready": True}
            server.stop()
            down = await ok(await client.get("/ready"), 503)
            assert down["ready"] is False
            assert down["error"].startswith(
                f"StorageUnavailableError: Redis at {server.host}:{server.port} is unavailable"
            ), down
            # Liveness is not readiness: the process itself is fine.
            assert (await client.get("/healthz")).status_code == 200
            server.restart()
            assert await ok(await client.get("/ready")) == {"ready": True}
    finally:
        server.stop()


async def test_pin_reaches_follower_feeds_and_notifications(
    client: httpx.AsyncClient, config: Config
) -> None:
    followed = await follow(client, 1, 2)
    assert followed["changed"] is True
    assert followed["target"] == {"id": 2, "name": "carol"}
    assert (await follow(client, 1, 2))["changed"] is False  # idempotent
    assert await counts(client, 1) == {"unseen_count": 0, "unread_count": 0}
    # carol was notified of her new follower
    (follow_note,) = (await read(client, 2, "notifications"))["items"]
    assert follow_note["text"] == "bob started following you"
    assert follow_note["verb"] == "follow"

    posted = await pin(client, 2, "Sunset over Lisbon", board="Road Trips")
    assert (posted["actor"], posted["actor_name"]) == (2, "carol")
    assert posted["title"] == "Sunset over Lisbon"
    assert posted["id"].isdigit()
    # an item is the activity's JSON view (plus display fields): a client rebuilds it
    rebuilt = Activity.from_dict(posted)
    assert str(rebuilt.serialization_id) == posted["id"]
    assert rebuilt.extra_context["board"] == "Road Trips"

    flat = await read(client, 1, "feed")
    assert flat["next"] is None
    assert [a["id"] for a in flat["items"]] == [posted["id"]]
    assert flat["items"][0]["text"] == "carol pinned “Sunset over Lisbon” to Road Trips"
    assert flat["items"][0]["board"] == "Road Trips"

    (group,) = (await read(client, 1, "aggregated"))["items"]
    assert group["verb"] == "pin"
    assert group["activity_count"] == 1
    assert group["actors"] == [{"id": 2, "name": "carol"}]
    assert [a["id"] for a in group["activities"]] == [posted["id"]]
    assert group["text"] == "carol pinned 1 pin"
    assert str(AggregatedActivity.from_dict(group).serialization_id) == group["id"]

    notes = await read(client, 1, "notifications")
    (note,) = notes["items"]
    assert note["is_seen"] is False and note["is_read"] is False
    assert not NotificationActivity.from_dict(note).is_seen()
    assert note["text"] == "carol pinned “Sunset over Lisbon” to Road Trips"
    assert (notes["unseen_count"], notes["unread_count"]) == (1, 1)
    assert await counts(client, 1) == {"unseen_count": 1, "unread_count": 1}

    own = await read(client, 2, "pins")
    assert [a["id"] for a in own["items"]] == [posted["id"]]
    # neither carol (the author) nor dave (no follower) got it in their feeds
    assert (await read(client, 2, "feed"))["items"] == []
    assert (await read(client, 3, "feed"))["items"] == []
    assert await counts(client, 3) == {"unseen_count": 0, "unread_count": 0}

    profile = await ok(await client.get("/api/users/1"))
    assert profile["following"] == [{"id": 2, "name": "carol"}]
    assert (await ok(await client.get("/api/users/2")))["followers"] == [{"id": 1, "name": "bob"}]

    if config.redis_url:  # the data really is in Redis
        from redis.asyncio import Redis

        raw = Redis.from_url(config.redis_url, decode_responses=True)
        try:
            assert await raw.smembers("web:followers:2") == {"1"}
            keys = [k async for k in raw.scan_iter(match="*feed:pin_notification:1*")]
            assert keys
        finally:
            await raw.aclose()


async def test_second_pin_joins_the_groups(client: httpx.AsyncClient) -> None:
    await follow(client, 1, 2)
    first = await pin(client, 2, "one")
    second = await pin(client, 2, "two")
    (group,) = (await read(client, 1, "aggregated"))["items"]
    assert [a["id"] for a in group["activities"]] == [first["id"], second["id"]]  # oldest first
    assert group["text"] == "carol pinned 2 pins"
    (note,) = (await read(client, 1, "notifications"))["items"]
    assert note["text"] == "carol pinned 2 new pins"
    assert await counts(client, 1) == {"unseen_count": 1, "unread_count": 1}


async def test_cursor_pagination_gives_disjoint_consecutive_pages(
    client: httpx.AsyncClient,
) -> None:
    await follow(client, 1, 2)
    posted = [(await pin(client, 2, f"pin {n}"))["id"] for n in range(7)]
    newest_first = posted[::-1]

    pages: list[list[str]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor is not None:
            params["before"] = cursor
        page = await read(client, 1, "feed", **params)
        pages.append([a["id"] for a in page["items"]])
        cursor = page["next"]
        if cursor is None:
            break
        assert cursor == page["items"][-1]["id"]
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [i for p in pages for i in p] == newest_first
    assert len({i for p in pages for i in p}) == 7
    # a new pin on top does not shift the pages after a cursor
    await pin(client, 2, "late")
    again = await read(client, 1, "feed", limit=3, before=pages[0][-1])
    assert [a["id"] for a in again["items"]] == pages[1]
    # the last page has no cursor, even when it is full
    assert (await read(client, 1, "feed", limit=7))["next"] is not None
    assert (await read(client, 1, "feed", limit=8))["next"] is None

    # groups page the same way: one notification group per author
    for author in (3, 4):
        await follow(client, 1, author)
        await pin(client, author, f"by {author}")
    first = await read(client, 1, "notifications", limit=2)
    second = await read(client, 1, "notifications", limit=2, before=first["next"])
    assert second["next"] is None
    texts = [n["text"] for n in first["items"] + second["items"]]
    assert texts == [
        "erin pinned “by 4” to Kitchen",
        "dave pinned “by 3” to Kitchen",
        "carol pinned 8 new pins",
    ]


async def test_mark_seen_and_read_changes_counts(client: httpx.AsyncClient) -> None:
    for author in (2, 3):
        await follow(client, 1, author)
        await pin(client, author, f"by {author}")
    assert await counts(client, 1) == {"unseen_count": 2, "unread_count": 2}
    newest, older = (await read(client, 1, "notifications"))["items"]

    mark = "/api/users/1/notifications/mark"
    after = await ok(
        await client.post(mark, json={"seen": True, "read": True, "ids": [newest["id"]]})
    )
    assert after == {"unseen_count": 1, "unread_count": 1}
    items = (await read(client, 1, "notifications"))["items"]
    assert [(n["id"], n["is_seen"], n["is_read"]) for n in items] == [
        (newest["id"], True, True),
        (older["id"], False, False),
    ]
    assert await ok(await client.post(mark, json={"seen": True})) == {
        "unseen_count": 0,
        "unread_count": 1,
    }
    assert await ok(await client.post(mark, json={"read": True})) == {
        "unseen_count": 0,
        "unread_count": 0,
    }
    # a new pin makes its group unseen and unread again
    await pin(client, 3, "again")
    assert await counts(client, 1) == {"unseen_count": 1, "unread_count": 1}


async def test_unfollow_removes_their_pins(client: httpx.AsyncClient) -> None:
    for author in (2, 3):
        await follow(client, 1, author)
    carol = await pin(client, 2, "carol's")
    dave = await pin(client, 3, "dave's")
    assert [a["id"] for a in (await read(client, 1, "feed"))["items"]] == [dave["id"], carol["id"]]

    gone = await ok(await client.delete("/api/users/1/following/2"))
    assert (gone["following"], gone["changed"]) == (False, True)
    assert (await ok(await client.delete("/api/users/1/following/2")))["changed"] is False

    assert [a["id"] for a in (await read(client, 1, "feed"))["items"]] == [dave["id"]]
    (group,) = (await read(client, 1, "aggregated"))["items"]
    assert [a["id"] for a in group["activities"]] == [dave["id"]]
    notes = await read(client, 1, "notifications")
    assert [n["text"] for n in notes["items"]] == ["dave pinned “dave's” to Kitchen"]
    assert (await ok(await client.get("/api/users/1")))["following"] == [{"id": 3, "name": "dave"}]
    assert (await ok(await client.get("/api/users/2")))["followers"] == []
    # carol's next pin no longer reaches bob
    await pin(client, 2, "after")
    assert [a["id"] for a in (await read(client, 1, "feed"))["items"]] == [dave["id"]]


async def test_editing_and_deleting_a_pin_reach_every_feed(client: httpx.AsyncClient) -> None:
    await follow(client, 1, 2)
    carol = await pin(client, 2, "draft", board="Garden")
    edited = await ok(
        await client.patch(f"/api/users/2/pins/{carol['id']}", json={"title": "final"})
    )
    assert (edited["pin"]["id"], edited["pin"]["title"], edited["pin"]["board"]) == (
        carol["id"],
        "final",
        "Garden",
    )
    assert [a["title"] for a in (await read(client, 1, "feed"))["items"]] == ["final"]
    (group,) = (await read(client, 1, "aggregated"))["items"]
    assert [a["title"] for a in group["activities"]] == ["final"]
    assert [a["title"] for a in (await read(client, 2, "pins"))["items"]] == ["final"]

    # Another user's pin, or no pin at all: a 404, nothing changes.
    wrong = await client.patch(f"/api/users/1/pins/{carol['id']}", json={"title": "x"})
    assert (wrong.status_code, wrong.json()["error"]["field"]) == (404, "pin_id")
    assert (await client.delete("/api/users/1/pins/12345")).status_code == 404
    empty = await client.patch(f"/api/users/2/pins/{carol['id']}", json={})
    assert (empty.status_code, empty.json()["error"]["field"]) == (400, "title")

    deleted = await ok(await client.delete(f"/api/users/2/pins/{carol['id']}"))
    assert deleted == {"deleted": carol["id"]}
    assert (await read(client, 1, "feed"))["items"] == []
    assert (await read(client, 1, "aggregated"))["items"] == []
    assert (await read(client, 2, "pins"))["items"] == []


async def test_follow_backfills_feeds_but_not_notifications(client: httpx.AsyncClient) -> None:
    earlier = await pin(client, 2, "before you came")
    await follow(client, 1, 2)
    assert [a["id"] for a in (await read(client, 1, "feed"))["items"]] == [earlier["id"]]
    assert len((await read(client, 1, "aggregated"))["items"]) == 1
    assert (await read(client, 1, "notifications"))["items"] == []
    assert await counts(client, 1) == {"unseen_count": 0, "unread_count": 0}


BAD_REQUESTS = [
    ("POST", "/api/users/1/pins", {}, "board"),
    ("POST", "/api/users/1/pins", {"board": 5}, "board"),
    ("POST", "/api/users/1/pins", {"board": "   "}, "board"),
    ("POST", "/api/users/1/pins", {"board": "x" * 61}, "board"),
    ("POST", "/api/users/1/pins", {"board": "Kitchen", "title": ["a"]}, "title"),
    ("POST", "/api/users/1/pins", b"{not json", "body"),
    ("POST", "/api/users/1/pins", [1, 2], "body"),
    ("POST", "/api/users/0/pins", {"board": "Kitchen"}, "user_id"),
    ("GET", "/api/users/abc/feed", None, "user_id"),
    ("GET", "/api/users/1/feed?limit=0", None, "limit"),
    ("GET", "/api/users/1/feed?limit=101", None, "limit"),
    ("GET", "/api/users/1/aggregated?limit=ten", None, "limit"),
    ("GET", "/api/users/1/notifications?before=abc", None, "before"),
    ("POST", "/api/users/1/following", {}, "target_id"),
    ("POST", "/api/users/1/following", {"target_id": "two"}, "target_id"),
    ("POST", "/api/users/1/following", {"target_id": True}, "target_id"),
    ("POST", "/api/users/1/following", {"target_id": 1}, "target_id"),
    ("DELETE", "/api/users/1/following/abc", None, "target_id"),
    ("POST", "/api/users/1/notifications/mark", {}, "seen"),
    ("POST", "/api/users/1/notifications/mark", {"seen": "yes"}, "seen"),
    ("POST", "/api/users/1/notifications/mark", {"read": 1}, "read"),
    ("POST", "/api/users/1/notifications/mark", {"seen": True, "ids": "all"}, "ids"),
    ("POST", "/api/users/1/notifications/mark", {"seen": True, "ids": ["x"]}, "ids[0]"),
    ("GET", "/api/users/0/events", None, "user_id"),
]


async def test_bad_input_is_a_400_naming_the_field(client: httpx.AsyncClient) -> None:
    for method, url, body, field in BAD_REQUESTS:
        content = body if isinstance(body, bytes) else None
        payload = None if body is None or isinstance(body, bytes) else body
        response = await client.request(method, url, json=payload, content=content)
        assert response.status_code == 400, (method, url, body, response.text)
        assert response.headers["content-type"].startswith("application/json")
        error = response.json()["error"]
        assert error["field"] == field, (url, body, error)
        assert error["message"], (url, body)
    # nothing was written by the rejected requests
    assert (await read(client, 1, "pins"))["items"] == []
    assert (await ok(await client.get("/api/users/1")))["following"] == []
