"""WHIP ingest (RFC 9725) and WHEP egress: a lesson published and pulled over plain HTTP.

A broadcasting tool (OBS, a hardware encoder, GStreamer's whipclientsink) is the
teacher's camera and microphone: `POST /whip/{lesson_id}` with the teacher's token
and an SDP offer is answered `201 Created` with the relay's answer and the
resource's `Location`; `DELETE` on that resource ends the publication. A player
pulls the lesson as an observer does with `POST /whep/{lesson_id}` and the
observer link's token.

Both are the WebSocket protocol's offers by another road: the same
`MediaGateway.negotiate`, with `whip=True` so that the client's m-lines are taken
by kind (media.adapter.offer.check_by_kind). Not supported: trickle ICE and ICE
restart (aiortc gathers every candidate before it answers, so the answer is
complete): `PATCH` is answered 501, as RFC 9725 §4.3.1 has a resource that takes
no PATCH answer.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import APIRouter, Request
from fastapi.responses import Response

from classroom.roles import Role
from media.gateway import MediaError, MediaUnavailable
from signaling.auth import CredentialGuard, bearer, client_address
from signaling.errors import ApiError
from signaling.ice import ice_servers, link_headers
from signaling.lessons import viewer_media_id
from signaling.limits import Limits
from signaling.tokens import Claims, TokenError
from signaling.ws import Services, within

SDP = "application/sdp"
# What a browser-based client on another origin may send and read (RFC 9725 §4.6:
# CORS). The credential is a bearer header, never a cookie, so any origin will do.
_CORS = {
    "access-control-allow-origin": "*",
    "access-control-allow-headers": "Authorization, Content-Type, If-Match",
    "access-control-expose-headers": "Location, Link, Accept-Post, Accept-Patch",
}

# Which role each road is for, and what the HTTP answer calls it.
_ROLE = {"whip": Role.TEACHER, "whep": Role.OBSERVER}


@dataclass
class Resource:
    """One WHIP publication or WHEP playback: a peer connection on the relay."""

    resource_id: str
    kind: str  # "whip" | "whep"
    lesson_id: str
    participant_id: str
    media_id: str
    ready: bool = False


@dataclass
class Resources:
    """The app's WHIP and WHEP resources, by id; built with the app, never global."""

    by_id: dict[str, Resource] = field(default_factory=dict)
    # What a resource held besides its entry (a WHEP viewer's place under the link's
    # cap): given back when it is dropped. Set by `router`.
    release: Callable[[Resource], None] = lambda resource: None

    def drop(self, resource: Resource) -> None:
        if self.by_id.pop(resource.resource_id, None) is not None:
            self.release(resource)

    def moved(self, lesson_id: str) -> None:
        """The lesson's media moved (Lessons.moved_listeners): its resources led to a
        peer connection that is gone, or that its node has just closed. They are
        forgotten at once, on every node: the client's DELETE or PATCH is answered 404,
        and the encoder's next POST (when its connection fails: at ICE consent expiry,
        RFC 7675, after a worker or node was killed; at once when the peer was closed)
        publishes on the lesson's new worker or node, never refused as a second
        publisher."""
        for resource in [r for r in self.by_id.values() if r.lesson_id == lesson_id]:
            self.drop(resource)

    def publisher(self, lesson_id: str) -> Resource | None:
        return next(
            (r for r in self.by_id.values() if r.kind == "whip" and r.lesson_id == lesson_id),
            None,
        )


def router(
    get: Callable[[Request], Services],
    resources: Resources,
    limits: Limits,
) -> APIRouter:
    api = APIRouter()

    def claims_of(request: Request, services: Services, lesson_id: str, kind: str) -> Claims:
        """The token's claims, for this lesson and this road's role; 401/403 otherwise."""
        credential = bearer(request)
        guard = CredentialGuard(limits.wrong_credentials, client_address(request), services.now)
        guard.check()
        try:
            claims = services.tokens.verify(credential, lesson_id)
        except TokenError as exc:
            if exc.code == "bad_token":
                guard.wrong()
            raise ApiError(403 if exc.code == "bad_token" else 401, exc.code, exc.message) from None
        wanted = _ROLE[kind]
        if claims.role is not wanted:
            who = "the teacher's" if wanted is Role.TEACHER else "the observer link's"
            raise ApiError(403, "not_allowed", f"{kind.upper()} takes {who} token")
        return claims

    async def live_lesson(services: Services, lesson_id: str) -> None:
        if services.lessons.live(lesson_id) is not None:
            return
        if await services.lessons.get(lesson_id) is not None:
            raise ApiError(409, "lesson_ended", "the lesson has ended")
        raise ApiError(404, "not_found", "there is no such lesson")

    def forget_gone(services: Services) -> None:
        """Resources whose lesson ended or whose peer connection failed or closed."""
        for resource in list(resources.by_id.values()):
            gone = services.lessons.live(resource.lesson_id) is None or (
                resource.ready
                and not services.media.has_peer(resource.lesson_id, resource.media_id)
            )
            if gone:
                drop(resource)

    def release(resource: Resource) -> None:
        if resource.kind == "whep":
            limits.connections.release(f"{resource.lesson_id}/{resource.participant_id}")

    resources.release = release
    drop = resources.drop

    async def create(request: Request, lesson_id: str, kind: str) -> Response:
        services = get(request)
        claims = claims_of(request, services, lesson_id, kind)
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != SDP:
            raise ApiError(415, "unsupported_media_type", f"send the offer as {SDP}")
        await live_lesson(services, lesson_id)
        try:
            offer = (await request.body()).decode()
        except UnicodeDecodeError:
            raise ApiError(400, "bad_sdp", "the offer is not UTF-8 text") from None
        if not limits.creations.take(client_address(request), services.now()):
            raise ApiError(429, "rate_limited", "too many requests; wait a little")
        forget_gone(services)
        pid = claims.participant_id
        if kind == "whip" and (other := resources.publisher(lesson_id)) is not None:
            raise ApiError(
                409,
                "conflict",
                f"the lesson has a WHIP publisher already; DELETE /whip/{lesson_id}/"
                f"{other.resource_id} (or stop that encoder) first",
            )
        if kind == "whep":
            cap = limits.policy.connections_per_observer_link
            if not limits.connections.acquire(f"{lesson_id}/{pid}", cap):
                raise ApiError(429, "too_many_connections", f"this link has {cap} viewers already")
        # Held before the relay is asked, so that a second publisher racing this one
        # is refused rather than replacing it.
        resource = Resource(
            secrets.token_urlsafe(16),
            kind,
            lesson_id,
            pid,
            viewer_media_id(pid, next(services.viewer_numbers)),
        )
        resources.by_id[resource.resource_id] = resource
        try:
            answer = await within(
                services.media.negotiate(
                    lesson_id, resource.media_id, claims.role, offer, whip=True
                ),
                services.settings.negotiate_timeout_s,
            )
        except MediaUnavailable as exc:
            drop(resource)
            raise ApiError(503, "media_unavailable", str(exc)) from None
        except MediaError as exc:
            drop(resource)
            raise ApiError(400, "bad_sdp", str(exc) or "the offer cannot be used") from None
        except TimeoutError:
            drop(resource)
            services.metrics.media_failures.labels("negotiate").inc()
            raise ApiError(
                503, "media_unavailable", "the media relay did not answer in time"
            ) from None
        except BaseException:
            drop(resource)
            raise
        resource.ready = True
        await services.lessons.published(lesson_id, pid, claims.role)
        headers = {
            **_CORS,
            "location": f"/{kind}/{lesson_id}/{resource.resource_id}",
        }
        servers = ice_servers(services.settings, pid, services.now())
        response = Response(answer, status_code=201, media_type=SDP, headers=headers)
        for link in link_headers(servers):
            response.headers.append("link", link)
        return response

    async def delete(request: Request, lesson_id: str, resource_id: str, kind: str) -> Response:
        services = get(request)
        claims = claims_of(request, services, lesson_id, kind)
        resource = resources.by_id.get(resource_id)
        if resource is None or resource.lesson_id != lesson_id or resource.kind != kind:
            raise ApiError(404, "not_found", f"there is no such {kind.upper()} resource")
        if resource.participant_id != claims.participant_id:
            raise ApiError(403, "not_allowed", "this resource is another participant's")
        drop(resource)
        await services.media.disconnect(lesson_id, resource.media_id)
        return Response(status_code=200, headers=_CORS)

    def options(methods: str, accept_post: bool) -> Response:
        headers = {**_CORS, "access-control-allow-methods": methods, "allow": methods}
        if accept_post:
            headers["accept-post"] = SDP
        return Response(status_code=204, headers=headers)

    for kind in ("whip", "whep"):

        def bind(kind: str = kind) -> None:
            @api.post(f"/{kind}/{{lesson_id}}", status_code=201, name=f"{kind}_create")
            async def _create(lesson_id: str, request: Request) -> Response:
                return await create(request, lesson_id, kind)

            @api.options(f"/{kind}/{{lesson_id}}", name=f"{kind}_options")
            async def _options(lesson_id: str) -> Response:
                return options("POST, OPTIONS", accept_post=True)

            @api.delete(f"/{kind}/{{lesson_id}}/{{resource_id}}", name=f"{kind}_delete")
            async def _delete(lesson_id: str, resource_id: str, request: Request) -> Response:
                return await delete(request, lesson_id, resource_id, kind)

            @api.options(f"/{kind}/{{lesson_id}}/{{resource_id}}", name=f"{kind}_resource_options")
            async def _resource_options(lesson_id: str, resource_id: str) -> Response:
                return options("DELETE, OPTIONS", accept_post=False)

            @api.patch(f"/{kind}/{{lesson_id}}/{{resource_id}}", name=f"{kind}_patch")
            async def _patch(lesson_id: str, resource_id: str) -> Response:
                resource = resources.by_id.get(resource_id)
                if resource is None or resource.lesson_id != lesson_id:
                    raise ApiError(404, "not_found", f"there is no such {kind.upper()} resource")
                raise ApiError(
                    501,
                    "not_implemented",
                    "no trickle ICE or ICE restart: the answer carries every candidate; "
                    "to restart, DELETE this resource and POST a new offer",
                )

        bind()
    return api
