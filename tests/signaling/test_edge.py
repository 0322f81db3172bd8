"""The edge link's pure parts and the origin's routing, without a network: two
channels joined by queues, the origin's gateway over fake relays."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path

import pytest

from classroom.roles import Role
from media.gateway import MediaError
from signaling.edge.client import link_url
from signaling.edge.origin import EdgeMedia
from signaling.edge.protocol import (
    Answer,
    Channel,
    CoverScreen,
    Disconnect,
    Done,
    LinkClosed,
    Negotiate,
    Pull,
    Reply,
    Report,
    Request,
    RequestRefused,
    SendUp,
    Want,
    parse,
)
from signaling.edge.revocations import Revocations
from signaling.settings import SettingsError, load_settings
from signaling.tokens import TokenError, TokenIssuer

from .fakes import ANSWER_SDP, FakeMedia

SECRET = "s" * 32
OFFER = "v=0\r\n"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("", {}),
        ("sch-1=county-a", {"sch-1": "county-a"}),
        (" sch-1 = county-a , sch-2=county-b ", {"sch-1": "county-a", "sch-2": "county-b"}),
        ('{"sch-1": "county-a"}', {"sch-1": "county-a"}),
    ],
)
def test_edge_schools_setting(
    monkeypatch: pytest.MonkeyPatch, given: str, expected: dict[str, str]
) -> None:
    monkeypatch.setenv("CLASSROOM_EDGE_SCHOOLS", given)
    assert load_settings().edge_schools == expected


@pytest.mark.parametrize("given", ["sch-1", "=county-a", "sch-1="])
def test_an_edge_schools_setting_without_an_edge_stops_the_start(
    monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    monkeypatch.setenv("CLASSROOM_EDGE_SCHOOLS", given)
    with pytest.raises(SettingsError, match="CLASSROOM_EDGE_SCHOOLS"):
        load_settings()


@pytest.mark.parametrize(
    ("origin", "url"),
    [
        ("https://county.example", "wss://county.example/edge/v1"),
        ("http://127.0.0.1:8000/", "ws://127.0.0.1:8000/edge/v1"),
        ("https://example.org/classroom", "wss://example.org/classroom/edge/v1"),
    ],
)
def test_the_link_address_of_an_origin(origin: str, url: str) -> None:
    assert link_url(origin) == url


def test_an_origin_that_is_no_web_address_is_refused() -> None:
    with pytest.raises(ValueError, match="not an http"):
        link_url("county.example")


def test_edge_tokens_open_only_the_edge_link() -> None:
    now = [1_700_000_000.0]
    issuer = TokenIssuer(SECRET, 3600, lambda: now[0])
    token, expires = issuer.issue_edge("county-a", 600)
    assert issuer.verify_edge(token) == "county-a"
    assert expires == now[0] + 600
    # Not a participant's token, nor a replay link.
    with pytest.raises(TokenError):
        issuer.verify(token)
    with pytest.raises(TokenError):
        issuer.verify_replay(token, "rec")
    # A participant's token is no edge's; another secret's is forged.
    with pytest.raises(TokenError, match="not valid"):
        issuer.verify_edge(issuer.issue("lesson", "room", Role.CLASSROOM))
    with pytest.raises(TokenError, match="not valid"):
        TokenIssuer("t" * 32, 3600, lambda: now[0]).verify_edge(token)
    now[0] += 601
    with pytest.raises(TokenError, match="expired") as expired:
        issuer.verify_edge(token)
    assert expired.value.code == "token_expired"


def test_a_revocation_refuses_the_tokens_made_until_then(tmp_path: Path) -> None:
    issuer_now = [1_700_000_000.0]
    issuer = TokenIssuer(SECRET, 3600, lambda: issuer_now[0])
    old, _ = issuer.issue_edge("county-a", 600)
    other, _ = issuer.issue_edge("county-b", 600)
    revocations = Revocations(tmp_path / "edges-revoked.json")
    name, issued = issuer.verify_edge_grant(old)
    assert (name, issued) == ("county-a", issuer_now[0])
    assert not revocations.refuses("county-a", issued)

    revocations.revoke("county-a", issuer_now[0] + 0.5)
    # Read by another process (the origin's) from the file.
    seen = Revocations(tmp_path / "edges-revoked.json")
    assert seen.refuses("county-a", issued)
    assert not seen.refuses(*issuer.verify_edge_grant(other))
    # A token of the same second is refused too; one of a later second is good.
    issuer_now[0] += 0.9
    assert seen.refuses(*issuer.verify_edge_grant(issuer.issue_edge("county-a", 600)[0]))
    issuer_now[0] += 0.2
    assert not seen.refuses(*issuer.verify_edge_grant(issuer.issue_edge("county-a", 600)[0]))
    # An earlier revocation does not undo a later one.
    revocations.revoke("county-a", 1_600_000_000.0)
    assert seen.refuses("county-a", issued)


def test_messages_are_parsed_by_their_type() -> None:
    message = parse('{"type": "pull", "id": 3, "lesson_id": "L", "sdp": "v=0"}')
    assert message == Pull(type="pull", id=3, lesson_id="L", sdp="v=0")
    for bad in ('{"type": "pull"}', '{"type": "shout", "id": 1}', "not json", '{"type": "done"}'):
        with pytest.raises(ValueError, match="not an edge link message"):
            parse(bad)


Serve = Callable[[Request], Awaitable[Reply]]


def joined(origin_serve: Serve, edge_serve: Serve) -> tuple[Channel, Channel]:
    """Two channels whose messages go through JSON to each other, as over the link."""
    ends: list[Channel] = []

    def sender(to: int) -> Callable[[str], Awaitable[None]]:
        async def send(text: str) -> None:
            ends[to].handle(parse(text))

        return send

    ends.append(Channel(sender(1), origin_serve))
    ends.append(Channel(sender(0), edge_serve))
    return ends[0], ends[1]


async def refuse(request: Request) -> Reply:
    raise RequestRefused("not_allowed", f"no {request.type} here")


async def test_requests_are_answered_or_refused_across_the_link() -> None:
    async def edge_serves(request: Request) -> Reply:
        assert isinstance(request, Negotiate)
        if request.sdp != OFFER:
            raise RequestRefused("bad_sdp", "not an offer")
        return Answer(type="answer", id=request.id, sdp="answer for " + request.participant_id)

    origin, _edge = joined(refuse, edge_serves)

    def negotiate(sdp: str) -> Negotiate:
        return Negotiate(type="negotiate", id=origin.next_id(), lesson_id="L",
                         participant_id="room", role="classroom", sdp=sdp)  # fmt: skip

    reply = await origin.ask(negotiate(OFFER))
    assert reply == Answer(type="answer", id=1, sdp="answer for room")
    with pytest.raises(RequestRefused, match="not an offer"):
        await origin.ask(negotiate("x"))


async def test_a_request_waiting_when_the_link_closes_fails() -> None:
    never = asyncio.Event()

    async def stalls(request: Request) -> Reply:
        await never.wait()
        raise AssertionError

    origin, _edge = joined(refuse, stalls)
    waiting = asyncio.create_task(origin.ask(Pull(type="pull", id=1, lesson_id="L", sdp="v=0")))
    await asyncio.sleep(0)
    origin.close()
    with pytest.raises(LinkClosed):
        await waiting
    with pytest.raises(LinkClosed):
        await origin.ask(Pull(type="pull", id=2, lesson_id="L", sdp="v=0"))


class Feeds:
    """The origin's relay as its edges see it: who pulls what; an edge classroom's
    uplink is a connection of that classroom in the origin's relay (`local`)."""

    def __init__(self, local: FakeMedia | None = None) -> None:
        self.local = local or FakeMedia()
        self.pulled: list[tuple[str, str]] = []
        self.dropped: list[tuple[str, str]] = []
        self.wanted: dict[tuple[str, str], list[int]] = {}

    async def negotiate_feed(self, lesson_id: str, edge_id: str, offer_sdp: str) -> str:
        self.pulled.append((lesson_id, edge_id))
        return "feed answer"

    async def drop_feed(self, lesson_id: str, edge_id: str) -> None:
        self.dropped.append((lesson_id, edge_id))

    def want_feed(self, lesson_id: str, edge_id: str, lines: Collection[int]) -> None:
        self.wanted[(lesson_id, edge_id)] = list(lines)

    async def negotiate_uplink(self, lesson_id: str, participant_id: str, offer_sdp: str) -> str:
        await self.local.negotiate(lesson_id, participant_id, Role.CLASSROOM, offer_sdp)
        return "uplink answer"


async def test_an_edge_schools_classroom_is_negotiated_by_its_edge_while_linked() -> None:
    local, at_edge, feeds = FakeMedia(), FakeMedia(), Feeds()
    routes = {("L", "far"): "county-a"}
    gateway = EdgeMedia(local, feeds, lambda lesson, pid: routes.get((lesson, pid)))

    async def edge_serves(request: Request) -> Reply:
        # The edge's side, as signaling.edge.client serves it, over a fake relay.
        if isinstance(request, Negotiate):
            try:
                sdp = await at_edge.negotiate(
                    request.lesson_id, request.participant_id, Role(request.role), request.sdp
                )
            except MediaError as exc:
                raise RequestRefused("bad_sdp", str(exc)) from None
            return Answer(type="answer", id=request.id, sdp=sdp)
        if isinstance(request, CoverScreen):
            await at_edge.cover_screen(request.lesson_id, request.covered)
            return Done(type="done", id=request.id)
        assert isinstance(request, Disconnect)
        await at_edge.disconnect(request.lesson_id, request.participant_id)
        return Done(type="done", id=request.id)

    async def origin_serves(request: Request) -> Reply:
        return await gateway.serve("county-a", request)

    origin_end, edge_end = joined(origin_serves, edge_serves)

    # Not linked yet: the origin serves the far classroom itself.
    assert await gateway.negotiate("L", "far", Role.CLASSROOM, OFFER) == ANSWER_SDP
    assert local.has_peer("L", "far")

    gateway.attach("county-a", origin_end)
    # Linked: the far classroom's next offer goes to the edge, and its old
    # connection here is closed; the near one and the teacher stay here.
    assert await gateway.negotiate("L", "far", Role.CLASSROOM, OFFER) == ANSWER_SDP
    assert ("disconnect", "L", "far") in local.calls
    assert at_edge.has_peer("L", "far") and not local.has_peer("L", "far")
    assert gateway.has_peer("L", "far")
    await gateway.negotiate("L", "near", Role.CLASSROOM, OFFER)
    await gateway.negotiate("L", "teacher", Role.TEACHER, OFFER)
    assert local.has_peer("L", "near") and local.has_peer("L", "teacher")
    assert not at_edge.has_peer("L", "near")

    # The edge pulls the lesson once; a bad offer to the edge is the classroom's error.
    reply = await edge_end.ask(Pull(type="pull", id=edge_end.next_id(), lesson_id="L", sdp="v"))
    assert reply == Answer(type="answer", id=1, sdp="feed answer")
    want = Want(type="want", id=edge_end.next_id(), lesson_id="L", lines=[0, 4])
    assert await edge_end.ask(want) == Done(type="done", id=2)
    assert feeds.wanted == {("L", "county-a"): [0, 4]}
    # A deck page over the screen share: the origin's relay and the edge's both hear it.
    await gateway.cover_screen("L", True)
    assert ("cover_screen", "L", True) in local.calls
    assert ("cover_screen", "L", True) in at_edge.calls
    with pytest.raises(MediaError):
        await gateway.negotiate("L", "far", Role.CLASSROOM, "not sdp")

    # Its classroom's link reports reach the teacher's stream; another's do not.
    reports = gateway.link_reports()
    next_report = asyncio.ensure_future(anext(reports))
    await asyncio.sleep(0)
    await gateway.negotiate("L", "far", Role.CLASSROOM, OFFER)
    stray = Report(type="link_report", lesson_id="L", participant_id="near", estimate_kbps=1,
                   sent_kbps=1, loss=0, rtt_ms=None, layers={}, server_load="ok")  # fmt: skip
    gateway.on_report("county-a", stray)
    gateway.on_report("county-a", stray.model_copy(update={"participant_id": "far"}))
    assert (await asyncio.wait_for(next_report, 5)).participant_id == "far"

    await gateway.disconnect("L", "far")
    assert not at_edge.has_peer("L", "far")

    # The link goes: its pulls end, and the far classroom is served here again.
    await gateway.negotiate("L", "far", Role.CLASSROOM, OFFER)
    origin_end.close()
    await gateway.detach("county-a", origin_end)
    assert feeds.dropped == [("L", "county-a")]
    assert not gateway.has_peer("L", "far")
    await gateway.negotiate("L", "far", Role.CLASSROOM, OFFER)
    assert local.has_peer("L", "far")

    # An edge that cannot serve it now (its pull failed): the origin serves it.
    async def edge_fails(request: Request) -> Reply:
        raise RequestRefused("media_unavailable", "the edge could not pull the lesson")

    failed_end, _ = joined(refuse, edge_fails)
    gateway.attach("county-a", failed_end)
    await gateway.disconnect("L", "far")
    assert not local.has_peer("L", "far")
    assert await gateway.negotiate("L", "far", Role.CLASSROOM, OFFER) == ANSWER_SDP
    assert local.has_peer("L", "far")

    await gateway.close()


async def test_an_edge_sends_up_only_its_own_classrooms() -> None:
    local = FakeMedia()
    routes = {("L", "far"): "county-a", ("L", "other"): "county-b"}
    gateway = EdgeMedia(local, Feeds(local), lambda lesson, pid: routes.get((lesson, pid)))

    async def edge_serves(request: Request) -> Reply:
        if isinstance(request, Negotiate):
            return Answer(type="answer", id=request.id, sdp="edge answer")
        return Done(type="done", id=request.id)

    async def origin_serves(request: Request) -> Reply:
        return await gateway.serve("county-a", request)

    origin_end, edge_end = joined(origin_serves, edge_serves)
    gateway.attach("county-a", origin_end)
    assert await gateway.negotiate("L", "far", Role.CLASSROOM, OFFER) == "edge answer"

    def send_up(participant_id: str) -> SendUp:
        return SendUp(type="uplink", id=edge_end.next_id(), lesson_id="L",
                      participant_id=participant_id, sdp=OFFER)  # fmt: skip

    reply = await edge_end.ask(send_up("far"))
    assert isinstance(reply, Answer) and reply.sdp == "uplink answer"
    # Its classroom is a source here now (its tile, the stage), served by the edge.
    assert local.has_peer("L", "far") and gateway.has_peer("L", "far")
    # Another edge's classroom, or one served here: not this edge's to send up.
    for other in ("other", "near"):
        with pytest.raises(RequestRefused, match="not served by this edge"):
            await edge_end.ask(send_up(other))
    assert not local.has_peer("L", "other") and not local.has_peer("L", "near")

    # The classroom leaves: its uplink here closes with its connection at the edge.
    await gateway.disconnect("L", "far")
    assert not local.has_peer("L", "far")
    # The link goes: the uplinks of its classrooms close with it.
    await gateway.negotiate("L", "far", Role.CLASSROOM, OFFER)
    await edge_end.ask(send_up("far"))
    assert local.has_peer("L", "far")
    origin_end.close()
    await gateway.detach("county-a", origin_end)
    assert not local.has_peer("L", "far")
    await gateway.close()
