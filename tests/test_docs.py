"""The docs are tests: every ```python block of README.md and docs/**/*.md runs here.

Readers copy the examples, so an example that does not run (a missing import, a feed the
Manager lacks, a count the feed does not have) is a bug, and only running them finds it
before a reader does.

A reader pastes a page's blocks one after another, so a page is one test: its blocks run
in order in one namespace (a module of its own), top-level ``await`` included, and a
block ending in ``asyncio.run(main())`` runs as the script it is (the test itself is
synchronous; top-level ``await`` runs in the page's own event loop). Tracebacks point
at the page's own lines.

A comment that shows a result is checked, not just shown. On an expression statement,
``print(...)`` included, a trailing comment that starts with ``[``, ``{`` or ``<``, or
that is a Python literal other than a string (``2``, ``None``), must be what the
expression gives: equal to it when the comment is a literal, else its ``repr`` (for
``print``, the printed text)::

    await feed.count_unseen()  # 2
    print(await feed[:10])  # [<Activity(loved) 1 42>]

Other comments are prose.

A block that cannot run alone says so with an HTML comment on the line before its fence
(invisible on the site; blank lines between are allowed, and inside a tab one is needed,
or the comment joins the fence's paragraph):

* ``<!-- docs-test: setup=NAME -->`` (``setup=A,B`` for several): run those
  :data:`SETUPS` first, in the page's namespace. A setup provides what the block takes
  from elsewhere (feed classes of another page, "your database", an activity) or the
  state it assumes, and the servers it needs: the suite's own private redis-server, an
  emptied database for the page (a page that uses one is marked ``redis``; with arq,
  ``arq``).
* ``<!-- docs-test: fragment -->``: only compiled, for what the suite cannot give: a fixed
  host (``10.0.0.5``, ``redis://queue:6379``), a library that is not a dependency (tqdm,
  rich, asyncpg), a file under ``/var/log``.

Every block is compiled, marked or not, so a block tagged python that is not Python (a
table) fails, and so does a marker that names nothing or precedes no python block. A
block that shows a library bug is listed in :data:`KNOWN_BUGS`: it must fail as said
there (strictly: once it passes, the entry must go), and the page goes on after it.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import dataclasses
import datetime as dt
import inspect
import io
import itertools
import logging
import re
import sys
import textwrap
import tokenize
import types
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest

from aiostream import verbs
from aiostream.storage import memory, registry

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
PYTHON_TAGS = {"python", "py", "python3"}
FENCE = re.compile(r"^[ \t]*(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
MARKER = re.compile(r"^<!--\s*docs-test:\s*(?P<directive>.*?)\s*-->$")
SHOWS_A_REPR = re.compile(r"^[\[{<]")
UNMARKED_NAME = (
    "define it on the page, or mark the block <!-- docs-test: setup=NAME --> "
    "(a setup of tests/test_docs.py) or <!-- docs-test: fragment -->"
)


# -- reading the pages -----------------------------------------------------------------------


class MarkerError(ValueError):
    """A ``docs-test`` marker that is not understood or precedes no python block."""


@dataclasses.dataclass(frozen=True)
class Block:
    """One fenced block tagged python, and what its marker says."""

    path: Path
    line: int  # of the opening fence, 1-based
    code: str  # dedented (blocks inside tabs and admonitions are indented)
    fragment: bool = False
    setups: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        return f"{relative(self.path)}:{self.line}"

    def source(self) -> str:
        """The code on the page's own line numbers."""
        return "\n" * self.line + self.code


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def read_blocks(path: Path) -> list[Block]:
    """The python blocks of a page, in order.

    Raises:
        MarkerError: a marker is not understood or precedes no python block.
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    marker: tuple[int, str] | None = None  # (line, directive) waiting for its fence

    def stray() -> MarkerError:
        assert marker is not None
        return MarkerError(f"{relative(path)}:{marker[0]}: the marker precedes no python block")

    index = 0
    while index < len(lines):
        text = lines[index]
        if found := MARKER.match(text.strip()):
            if marker is not None:
                raise stray()
            marker, index = (index + 1, found["directive"]), index + 1
            continue
        fence = FENCE.match(text)
        if fence is None:
            if marker is not None and text.strip():
                raise stray()
            index += 1
            continue
        opening = fence["fence"]
        closing = re.compile(rf"[ \t]*{re.escape(opening[0])}{{{len(opening)},}}\s*")
        end = index + 1
        while end < len(lines) and not closing.fullmatch(lines[end]):
            end += 1
        language = (fence["info"].split() or [""])[0].strip("{.}").lower()
        if language in PYTHON_TAGS:
            code = textwrap.dedent("\n".join(lines[index + 1 : end])) + "\n"
            fragment, setups = parse_marker(path, marker)
            blocks.append(Block(path, index + 1, code, fragment, setups))
        elif marker is not None:
            raise stray()
        marker, index = None, end + 1
    if marker is not None:
        raise stray()
    return blocks


def parse_marker(path: Path, marker: tuple[int, str] | None) -> tuple[bool, tuple[str, ...]]:
    """(fragment, setups) of a marker."""
    if marker is None:
        return False, ()
    line, directive = marker
    if directive == "fragment":
        return True, ()
    if directive.startswith("setup="):
        names = tuple(name.strip() for name in directive.removeprefix("setup=").split(","))
        unknown = [name for name in names if name not in SETUPS]
        if unknown:
            raise MarkerError(f"{relative(path)}:{line}: no setup named {unknown} (see SETUPS)")
        return False, names
    raise MarkerError(
        f"{relative(path)}:{line}: unknown marker {directive!r} "
        "(docs-test: fragment, or docs-test: setup=NAME)"
    )


def compile_block(block: Block) -> types.CodeType:
    """The block compiled with top-level ``await`` allowed and its shown results checked.

    Raises:
        SyntaxError: the block is not Python.
    """
    source = block.source()
    tree = ast.parse(source, filename=str(block.path))
    checked = CheckShownResults(relative(block.path), comments(source)).visit(tree)
    return compile(
        ast.fix_missing_locations(checked),
        str(block.path),  # linecache reads the page itself: tracebacks show its lines
        "exec",
        flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
        dont_inherit=True,  # not this module's `from __future__ import annotations`
    )


def comments(source: str) -> dict[int, str]:
    """Line number to the text of the comment on that line."""
    found: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            found[token.start[0]] = token.string[1:].strip()
    return found


def shows_a_result(comment: str) -> bool:
    """Whether a comment shows a result (rather than saying something about the line)."""
    if SHOWS_A_REPR.match(comment):
        return True
    try:
        literal = ast.literal_eval(comment)
    except (ValueError, SyntaxError):
        return False
    return not isinstance(literal, str)  # "mark all as read" is a quote, not a result


class CheckShownResults(ast.NodeTransformer):
    """``expr  # shown`` becomes ``__docs_expect__(expr, "shown", "page:line")``, and
    ``print(...)  # shown`` becomes ``__docs_print__("shown", "page:line", ...)``, in
    function bodies too."""

    def __init__(self, page: str, comments: Mapping[int, str]) -> None:
        self.page = page
        self.comments = comments

    def visit_Expr(self, node: ast.Expr) -> ast.Expr:
        shown = self.comments.get(node.end_lineno or node.lineno)
        if shown is None or not shows_a_result(shown):
            return node
        where = ast.Constant(f"{self.page}:{node.lineno}")
        value = node.value
        if (
            isinstance(value, ast.Call)
            and isinstance(value.func, ast.Name)
            and value.func.id == "print"
        ):
            check = ast.Name("__docs_print__", ast.Load())
            call = ast.Call(check, [ast.Constant(shown), where, *value.args], value.keywords)
            return ast.copy_location(ast.Expr(call), node)
        check = ast.Name("__docs_expect__", ast.Load())
        return ast.copy_location(
            ast.Expr(ast.Call(check, [value, ast.Constant(shown), where], [])), node
        )


def expect(value: Any, shown: str, where: str) -> Any:
    """``__docs_expect__``: the value is what the comment shows."""
    try:
        literal = ast.literal_eval(shown)
    except (ValueError, SyntaxError):
        same = repr(value) == shown
    else:
        same = bool((dict(value) if isinstance(value, Mapping) else value) == literal)
    if not same:
        raise AssertionError(f"{where} shows {shown}, but the value is {value!r}")
    return value


def print_shown(shown: str, where: str, *args: Any, **kwargs: Any) -> None:
    """``__docs_print__``: print, and the printed text is what the comment shows."""
    text = io.StringIO()
    print(*args, **{**kwargs, "file": text})
    sys.stdout.write(text.getvalue())
    if text.getvalue().rstrip("\n") != shown:
        raise AssertionError(f"{where} shows {shown}, but prints {text.getvalue()!r}")


# -- running them ----------------------------------------------------------------------------

# A database of the session's redis-server per page that needs one, emptied first (as the
# arq and examples tests do: tests run one at a time, each empties its own).
_databases = itertools.cycle(range(1, 16))


class Page:
    """One page being run: its namespace (a module), its event loop, its cleanups."""

    def __init__(
        self, path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        self.path = path
        self.request = request
        self.monkeypatch = monkeypatch
        self.module = types.ModuleType("docs_" + re.sub(r"\W", "_", relative(path)[:-3]))
        self.namespace: dict[str, Any] = self.module.__dict__
        self.namespace.update(__docs_expect__=expect, __docs_print__=print_shown)
        monkeypatch.setitem(sys.modules, self.module.__name__, self.module)
        self.runner = asyncio.Runner()
        self.cleanups: list[Callable[[], Coroutine[Any, Any, None]]] = []
        self._redis_url: str | None = None

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """Run in the page's event loop (the one its top-level ``await`` uses)."""
        return self.runner.run(coroutine)

    def define(self, **names: Any) -> None:
        self.namespace.update(names)

    def execute(self, block: Block) -> None:
        code = compile_block(block)
        for name in block.setups:
            SETUPS[name].run(self)
        try:
            result = eval(code, self.namespace)
            if inspect.iscoroutine(result):  # the block has a top-level await
                self.run(result)
        except NameError as exc:
            raise AssertionError(f"{block.where}: {exc}: {UNMARKED_NAME}") from exc

    def close(self) -> None:
        try:
            for cleanup in reversed(self.cleanups):
                self.run(cleanup())
            self.run(registry.close_default_storages())
        finally:
            self.runner.close()

    def redis_url(self) -> str:
        """An emptied database of the session's private redis-server, for this page; it is
        ``STREAM_REDIS_URL`` from now on."""
        if self._redis_url is None:
            from redis.asyncio import Redis

            from tests.backends.redis import BACKENDS

            handle = self.request.getfixturevalue("servers").get(BACKENDS["redis"])
            url = f"redis://{handle.host}:{handle.port}/{next(_databases)}"

            async def empty() -> None:
                client = Redis.from_url(url)
                try:
                    await client.flushdb()
                finally:
                    await client.aclose()

            self.run(empty())
            self.monkeypatch.setenv("STREAM_REDIS_URL", url)
            self._redis_url = url
        return self._redis_url


@contextlib.contextmanager
def kept_logging() -> Iterator[None]:
    """Undo what a page does to logging (levels, handlers) once it is done."""

    def loggers() -> list[logging.Logger]:
        known = logging.Logger.manager.loggerDict.values()
        return [logging.getLogger(), *(x for x in known if isinstance(x, logging.Logger))]

    saved = {id(logger): (logger.level, list(logger.handlers)) for logger in loggers()}
    try:
        yield
    finally:
        for logger in loggers():
            level, handlers = saved.get(id(logger), (logging.NOTSET, []))
            for handler in list(logger.handlers):
                if handler not in handlers:
                    logger.removeHandler(handler)
                    handler.close()
            if logger.level != level:
                logger.setLevel(level)


# -- setups ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Setup:
    """What a marked block gets before it runs, and the marks of a page that uses it."""

    run: Callable[[Page], None]
    marks: tuple[pytest.MarkDecorator, ...] = ()


SETUPS: dict[str, Setup] = {}
T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


def setup(
    name: str, *marks: pytest.MarkDecorator
) -> Callable[[Callable[[Page], None]], Callable[[Page], None]]:
    def register(function: Callable[[Page], None]) -> Callable[[Page], None]:
        SETUPS[name] = Setup(function, marks)
        return function

    return register


@setup("activities")
def _activities(page: Page) -> None:
    """``activity``, ``first``, ``second``, ``third`` and ``activities``: loves of pin 42
    (users 1 to 4, a minute apart), as a page that says "an activity" means."""
    from aiostream import Activity, Love

    made = [Activity(u, Love, 42, time=T0 + dt.timedelta(minutes=u)) for u in range(1, 5)]
    page.define(activity=made[0], first=made[1], second=made[2], third=made[3])
    page.define(activities=made[1:])


@setup("refill")
def _refill(page: Page) -> None:
    """The page's ``feed`` holds the page's activities again (a block before deleted it)."""
    ns = page.namespace
    page.run(ns["feed"].add_many([ns["activity"], ns["first"], ns["second"], ns["third"]]))


@setup("id_range")
def _id_range(page: Page) -> None:
    """``low`` and ``high``: the ids of the oldest and newest activity of ``page``."""
    shown = page.namespace["page"]
    page.define(low=shown[-1].serialization_id, high=shown[0].serialization_id)


@setup("your_database")
def _your_database(page: Page) -> None:
    """The follow graph "your database" holds: users 2 and 3 follow everyone (3 is
    inactive), and everyone follows user 2."""

    async def followers_of(user_id: Any) -> list[int]:
        return [u for u in (2, 3) if u != user_id]

    async def followers_by_activity(user_id: Any) -> tuple[list[int], list[int]]:
        followers = await followers_of(user_id)
        return [u for u in followers if u != 3], [u for u in followers if u == 3]

    async def followees_of(user_id: Any) -> list[int]:
        return [] if user_id == 2 else [2]

    async def follower_count_of(user_id: Any) -> int:
        return len(await followers_of(user_id))

    page.define(
        followers_of=followers_of,
        followers_by_activity=followers_by_activity,
        followees_of=followees_of,
        follower_count_of=follower_count_of,
    )


@setup("pin_feeds")
def _pin_feeds(page: Page) -> None:
    """The in-memory feed classes of the flat, aggregated and notification feed pages."""
    from aiostream import AggregatedFeed, BaseFeed, NotificationFeed, UserBaseFeed

    class PinFeed(BaseFeed):
        key_format = "feed:normal:%(user_id)s"

    class AggregatedPinFeed(AggregatedFeed):
        key_format = "feed:aggregated:%(user_id)s"

    class PinNotificationFeed(NotificationFeed):
        key_format = "feed:notification:%(user_id)s"

    class UserPinFeed(UserBaseFeed):
        key_format = "feed:user:%(user_id)s"

    page.define(
        PinFeed=PinFeed,
        AggregatedPinFeed=AggregatedPinFeed,
        PinNotificationFeed=PinNotificationFeed,
        UserPinFeed=UserPinFeed,
    )


@setup("pin_manager")
def _pin_manager(page: Page) -> None:
    """``PinFeed`` and a ``PinManager`` writing it (nobody follows anyone)."""
    from aiostream import Manager

    _pin_feeds(page)

    class PinManager(Manager):
        feed_classes: ClassVar[dict[str, Any]] = {"normal": page.namespace["PinFeed"]}
        user_feed_class = page.namespace["UserPinFeed"]

        def get_user_follower_ids(self, user_id: Any) -> dict[str, list[int]]:
            return {}

    page.define(PinManager=PinManager)


@setup("redis_pin_manager", pytest.mark.redis)
def _redis_pin_manager(page: Page) -> None:
    """A ``PinManager`` of Redis feeds (on the page's database; ``your_database``'s graph)
    and an ``activity``."""
    from aiostream import Activity, FanoutPriority, Love, Manager
    from aiostream.feeds.redis import RedisFeed, RedisUserBaseFeed

    page.redis_url()

    class PinFeed(RedisFeed):
        key_format = "feed:normal:%(user_id)s"

    class UserPinFeed(RedisUserBaseFeed):
        key_format = "feed:user:%(user_id)s"

    followers_of = page.namespace["followers_of"]

    class PinManager(Manager):
        feed_classes: ClassVar[dict[str, Any]] = {"normal": PinFeed}
        user_feed_class = UserPinFeed

        async def get_user_follower_ids(self, user_id: Any) -> dict[str, list[int]]:
            return {FanoutPriority.HIGH: await followers_of(user_id)}

    page.define(PinManager=PinManager, activity=Activity(1, Love, 42, time=T0))


@setup("redis", pytest.mark.redis)
def _redis(page: Page) -> None:
    """``STREAM_REDIS_URL``: an emptied database of the suite's private redis-server."""
    page.redis_url()


@setup("arq", pytest.mark.arq, pytest.mark.redis)
def _arq(page: Page) -> None:
    """As ``redis``, the queues of arq included (needs arq)."""
    page.redis_url()


@setup("myapp")
def _myapp(page: Page) -> None:
    """The page's module is ``myapp.feeds``: what a ``# myapp/feeds.py`` block defined."""
    package = types.ModuleType("myapp")
    package.__path__ = []
    package.feeds = page.module  # type: ignore[attr-defined]
    page.monkeypatch.setitem(sys.modules, "myapp", package)
    page.monkeypatch.setitem(sys.modules, "myapp.feeds", page.module)


@setup("failed_job", pytest.mark.arq, pytest.mark.redis)
def _failed_job(page: Page) -> None:
    """``dispatcher``: an ArqDispatcher on the page's database, holding one failed job
    (recorded as a worker records one)."""
    from aiostream.tasks import ArqDispatcher, FailedJob

    url = page.redis_url()

    async def connect() -> Any:
        dispatcher = await ArqDispatcher.connect(url)
        failed = FailedJob(
            job_id="fanout:doc",
            function="fanout_operation_high",
            queue=dispatcher.queues.high,
            args=[],
            error="StorageUnavailableError('Redis at feeds:6379/0 is unavailable')",
            error_type="StorageUnavailableError",
            tries=5,
            failed_at=T0.timestamp(),
            reason="tries exhausted",
        )
        await dispatcher.pool.hset(dispatcher.queues.failed, failed.job_id, failed.to_json())
        return dispatcher

    dispatcher = page.run(connect())
    page.cleanups.append(dispatcher.aclose)
    page.define(dispatcher=dispatcher)


@setup("pins")
def _pins(page: Page) -> None:
    """User 13's flat feed (``feed:normal:13``) holds a pin with a title."""
    from aiostream import Activity, BaseFeed, Love

    class Feed(BaseFeed):
        key_format = "feed:normal:%(user_id)s"

    page.run(Feed(13).add(Activity(7, Love, 42, time=T0, extra_context={"title": "Sunset"})))


@setup("notification_manager")
def _notification_manager(page: Page) -> None:
    """``manager`` with a ``"notification"`` feed of class ``PinNotificationFeed``, and
    ``user_id``, whose notification feed holds a group."""
    from aiostream import Activity, Love, Manager, NotificationFeed

    class PinNotificationFeed(NotificationFeed):
        key_format = "feed:notification:%(user_id)s"

    class PinManager(Manager):
        feed_classes: ClassVar[dict[str, Any]] = {"notification": PinNotificationFeed}

        def get_user_follower_ids(self, user_id: Any) -> dict[str, list[int]]:
            return {"HIGH": [2]}

    manager = PinManager()
    page.run(manager.add_user_activity(1, Activity(1, Love, 42, time=T0)))
    page.define(PinNotificationFeed=PinNotificationFeed, manager=manager, user_id=2)


@setup("other_pin")
def _other_pin(page: Page) -> None:
    """``other``: a second pin of the page's user, published."""
    from aiostream import Activity

    ns = page.namespace
    other = Activity(ns["user_id"], ns["Pin"], "pin:43", foreign_id="pin:43", time=T0)
    page.run(ns["manager"].add_user_activity(ns["user_id"], other))
    page.define(other=other)


@setup("team")
def _team(page: Page) -> None:
    """``team_ids``: the user ids of a team."""
    page.define(team_ids=[7, 8, 9])


@setup("targets")
def _targets(page: Page) -> None:
    """``target_id`` and ``target_ids``: users the page's user follows (2 has a pin)."""
    from aiostream import Activity

    ns = page.namespace
    page.run(ns["manager"].add_user_activity(2, Activity(2, ns["Pin"], "pin:2", time=T0)))
    page.define(target_id=2, target_ids=[2, 5, 6])


@setup("history")
def _history(page: Page) -> None:
    """``past_activities`` and ``activities``: pins of the page's user, oldest first."""
    from aiostream import Activity

    ns = page.namespace
    past = [
        Activity(ns["user_id"], ns["Pin"], f"pin:{n}", time=T0 - dt.timedelta(days=n))
        for n in range(30, 0, -1)
    ]
    page.define(past_activities=past, activities=past)


@setup("prometheus")
def _prometheus(page: Page) -> None:
    """The default registry is a fresh one, and ``start_http_server`` serves it on a
    free loopback port instead of the page's fixed one; when the page is done, the
    server must be serving the page's series."""
    import urllib.request

    import prometheus_client

    from aiostream.metrics import prometheus

    fresh = prometheus_client.CollectorRegistry()
    page.monkeypatch.setattr(prometheus, "REGISTRY", fresh)
    real = prometheus_client.start_http_server
    started: list[Any] = []

    def start_http_server(port: int, addr: str = "0.0.0.0", **options: Any) -> Any:
        server, thread = real(0, "127.0.0.1", registry=fresh)
        started.append((server, thread))
        return server, thread

    def fetch(url: str) -> bytes:
        with urllib.request.urlopen(url, timeout=10) as response:
            body: bytes = response.read()
        return body

    async def check_and_stop() -> None:
        for server, thread in started:
            url = f"http://127.0.0.1:{server.server_port}/metrics"
            body = await asyncio.to_thread(fetch, url)
            server.shutdown()
            server.server_close()
            thread.join()
            assert b"aiostream_" in body, body[:200]
        assert started, "the page started no metrics server"

    page.monkeypatch.setattr(prometheus_client, "start_http_server", start_http_server)
    page.cleanups.append(check_and_stop)


@setup("realtime")
def _realtime(page: Page) -> None:
    """``feed``: user 42's notification feed; while the page watches it, another writer
    adds two loves and marks the feed seen, then the subscription is closed (as leaving
    the ``async with`` would), which ends the page's ``async for``."""
    from aiostream import Activity, Love, NotificationFeed

    class Bell(NotificationFeed):
        key_format = "feed:notification:%(user_id)s"

    feed = Bell(42)
    subscribe = feed.subscribe

    async def write_then_close(updates: Any) -> None:
        writer = Bell(42)
        await writer.add(Activity(1, Love, 7, time=T0))
        await writer.add(Activity(2, Love, 7, time=T0))
        await writer.mark_all(seen=True)
        updates.close()

    @contextlib.asynccontextmanager
    async def watched(**options: Any) -> AsyncIterator[Any]:
        async with subscribe(**options) as updates:
            writer = asyncio.create_task(write_then_close(updates))
            try:
                yield updates
            finally:
                await writer

    feed.subscribe = watched  # type: ignore[method-assign]
    page.define(feed=feed)


@setup("photo")
def _photo(page: Page) -> None:
    """``alice`` (user 1) and her ``photo`` (500, owned by user 42); it is 2024-05-01."""
    from aiostream.activity import _single

    page.monkeypatch.setattr(_single, "utcnow", lambda: T0)
    page.define(
        alice=types.SimpleNamespace(id=1, name="alice"),
        photo=types.SimpleNamespace(id=500, owner_id=42),
    )


@setup("mention")
def _mention(page: Page) -> None:
    """``Mention`` (a verb, registered), and ``comment`` 77 by ``author_id`` 1 mentioning
    users 2 and 3."""
    from aiostream import Verb, register

    class Mention(Verb):
        id = 11
        infinitive = "mention"
        past_tense = "mentioned"

    register(Mention)
    page.define(
        Mention=Mention,
        author_id=1,
        comment=types.SimpleNamespace(id=77, mentioned_user_ids=[2, 3]),
    )


@setup("photo_feed")
def _photo_feed(page: Page) -> None:
    """``PhotoFeed``: the followers' flat feed."""
    from aiostream import BaseFeed

    class PhotoFeed(BaseFeed):
        key_format = "feed:normal:%(user_id)s"

    page.define(PhotoFeed=PhotoFeed)


# Blocks that show a library bug: (page, a line of the block) -> (the error it raises, why).
# Such a block must raise it (once it no longer does, remove the entry); the page goes on.
KNOWN_BUGS: dict[tuple[str, str], tuple[type[BaseException], str]] = {}


def known_bug(block: Block) -> tuple[type[BaseException], str] | None:
    page = relative(block.path)
    return next(
        (bug for (p, line), bug in KNOWN_BUGS.items() if p == page and line in block.code), None
    )


# -- the tests -------------------------------------------------------------------------------


def pages(*, marked: bool) -> list[Any]:
    """A param per page with a python block; ``marked``: with the marks its setups give
    (``redis``, ``arq``), for the test that runs the page."""
    params = []
    for path in DOC_FILES:
        try:
            blocks = read_blocks(path)
        except MarkerError:  # the tests of the page say what is wrong
            params.append(pytest.param(path, id=relative(path)))
            continue
        if blocks:
            used = [m for b in blocks for s in b.setups for m in SETUPS[s].marks] if marked else []
            marks = {m.name: m for m in used}
            params.append(pytest.param(path, id=relative(path), marks=list(marks.values())))
    return params


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A page starts from nothing: the stock verbs only (pages register their own Pin,
    id 5, as the demo does), empty default storages, no STREAM_* settings."""
    stock = {verb.id: verb for verb in (verbs.Follow, verbs.Comment, verbs.Love, verbs.Add)}
    monkeypatch.setattr(verbs.default_registry, "_by_id", stock)
    monkeypatch.setattr(memory, "_default", None)
    monkeypatch.setattr(registry, "_no_loop", {})
    monkeypatch.setattr(registry, "_settings", None)
    for name in ("STREAM_REDIS_URL", "STREAM_REDIS_SERVERS", "STREAM_ARQ_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    with kept_logging():
        yield


@pytest.mark.parametrize("path", pages(marked=False))
def test_blocks_are_python(path: Path) -> None:
    """Every python block compiles, fragments included (a table tagged python does not),
    and every marker names what exists and precedes a python block."""
    errors = []
    for block in read_blocks(path):
        try:
            compile_block(block)
        except SyntaxError as exc:
            errors.append(f"{block.where}: tagged python but is not Python: {exc}")
    assert not errors, "\n".join(errors)


@pytest.mark.usefixtures("isolated")
@pytest.mark.parametrize("path", pages(marked=True))
def test_page_runs(
    path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page's blocks, in order, in one namespace; fragments are only compiled."""
    page = Page(path, request, monkeypatch)
    try:
        for block in read_blocks(path):
            if block.fragment:
                compile_block(block)
            elif (bug := known_bug(block)) is not None:
                error, reason = bug
                try:
                    page.execute(block)
                except error:
                    continue
                pytest.fail(f"{block.where} works now ({reason}): remove it from KNOWN_BUGS")
            else:
                page.execute(block)
    finally:
        page.close()


def test_every_page_is_read() -> None:
    """The pages are where this test looks, and the markers are read as meant."""
    assert (ROOT / "README.md") in DOC_FILES
    assert ROOT / "docs" / "index.md" in DOC_FILES
    blocks = [block for path in DOC_FILES for block in read_blocks(path)]
    assert len(blocks) > 50
    assert any(block.fragment for block in blocks)
    assert all(not (block.fragment and block.setups) for block in blocks)
    used = {name for block in blocks for name in block.setups}
    assert used == set(SETUPS), f"setups no page uses: {sorted(set(SETUPS) - used)}"
