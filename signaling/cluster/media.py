"""The media gateway of a node: the lesson's own relay, wherever the lesson is held.

A participant's offer reaches the node that serves its WebSocket; the lesson's media
is on the node that holds the lesson (`Node.owner`). For a lesson held here the
local relay answers; for another, the offer is asked of that node through Redis
(`Node.ask`) and its relay's answer comes back: the browser then speaks ICE and
DTLS with the lesson's node, at the addresses its answer gives.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from classroom.roles import Role
from media.gateway import LinkReport, MediaError, MediaGateway
from signaling.cluster.node import Args, Node, NodeGone, Refused

BAD_SDP = "bad_sdp"


class ClusterMedia:
    """`MediaGateway` over the local relay and the other nodes' relays."""

    def __init__(self, local: MediaGateway, node: Node) -> None:
        self._local = local
        self._node = node
        node.on_request("negotiate", self._on_negotiate)
        node.on_request("disconnect", self._on_disconnect)

    async def _owner(self, lesson_id: str) -> str | None:
        """The lesson's node if it is another one; None for this one."""
        owner = await self._node.owner(lesson_id)
        if owner is None:
            raise NodeGone(f"no node holds lesson {lesson_id}")
        return None if owner == self._node.id else owner

    async def negotiate(
        self, lesson_id: str, participant_id: str, role: Role, offer_sdp: str, *, whip: bool = False
    ) -> str:
        owner = await self._owner(lesson_id)
        if owner is None:
            return await self._local.negotiate(
                lesson_id, participant_id, role, offer_sdp, whip=whip
            )
        args = {
            "lesson": lesson_id,
            "participant": participant_id,
            "role": str(role),
            "sdp": offer_sdp,
            "whip": whip,
        }
        try:
            answer = await self._node.ask(owner, "negotiate", args)
        except Refused as exc:
            if exc.code == BAD_SDP:
                raise MediaError(exc.message) from None
            raise
        return str(answer["sdp"])

    def has_peer(self, lesson_id: str, participant_id: str) -> bool:
        # Elsewhere, a peer is taken to be there: its node closes what fails.
        if self._node.owns(lesson_id):
            return self._local.has_peer(lesson_id, participant_id)
        return True

    async def set_stage(self, lesson_id: str, classroom_id: str | None) -> None:
        # Played by the lesson's node, which runs its commands (signaling.lessons._play).
        await self._local.set_stage(lesson_id, classroom_id)

    async def cover_screen(self, lesson_id: str, covered: bool) -> None:
        # Played by the lesson's node, as the stage is.
        await self._local.cover_screen(lesson_id, covered)

    async def disconnect(self, lesson_id: str, participant_id: str) -> None:
        owner = await self._owner(lesson_id)
        if owner is None:
            await self._local.disconnect(lesson_id, participant_id)
        else:
            await self._node.ask(
                owner, "disconnect", {"lesson": lesson_id, "participant": participant_id}
            )

    async def end_lesson(self, lesson_id: str) -> None:
        await self._local.end_lesson(lesson_id)

    def link_reports(self) -> AsyncIterator[LinkReport]:
        return self._local.link_reports()

    async def close(self) -> None:
        await self._local.close()

    # -- asked by other nodes ------------------------------------------------------------

    async def _on_negotiate(self, args: Args) -> Args:
        if not self._node.owns(args["lesson"]):
            raise Refused("lesson_moved", "the lesson is not held by this node")
        try:
            sdp = await self._local.negotiate(
                args["lesson"], args["participant"], Role(args["role"]), args["sdp"],
                whip=bool(args["whip"]),
            )  # fmt: skip
        except MediaError as exc:
            raise Refused(BAD_SDP, str(exc) or "the offer cannot be used") from None
        return {"sdp": sdp}

    async def _on_disconnect(self, args: Args) -> Args:
        if self._node.owns(args["lesson"]):
            await self._local.disconnect(args["lesson"], args["participant"])
        return {}
