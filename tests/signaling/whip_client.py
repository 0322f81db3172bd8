"""A WHIP and WHEP client written from RFC 9725 over aiortc and httpx, for the tests.

It knows nothing of the classroom's own offer layout: a WHIP client offers what a
broadcasting tool offers (one video, one audio, sendonly, bundled), a WHEP client
what a player asks for (recvonly video and audio). Candidates are gathered on
127.0.0.1 only (or the `hosts` given), as every media test here does.
"""

from __future__ import annotations

import asyncio
import contextlib

import httpx
from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from media.adapter.hooks import gather_on

SDP = "application/sdp"


class WhipError(Exception):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"{response.status_code}: {response.text}")
        self.response = response


class Client:
    """One WHIP publication or WHEP playback: POST the offer, DELETE the resource."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        endpoint: str,
        token: str,
        hosts: tuple[str, ...] = ("127.0.0.1",),
    ) -> None:
        self.http, self.endpoint, self.token, self.hosts = http, endpoint, token, hosts
        self.pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        self.location: str | None = None
        self.response: httpx.Response | None = None
        self.frames: dict[str, int] = {}
        self.sizes: set[tuple[int, int]] = set()
        self._readers: list[asyncio.Task[None]] = []
        self._got: dict[str, asyncio.Event] = {}

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def publish(
        self, video: MediaStreamTrack, audio: MediaStreamTrack, video_codec: str | None = None
    ) -> str:
        """WHIP: the camera and microphone, sendonly; the answer's SDP. `video_codec`
        ("video/H264", as OBS sends) offers that codec alone."""
        self.pc.addTransceiver(audio, direction="sendonly")
        camera = self.pc.addTransceiver(video, direction="sendonly")
        if video_codec is not None:
            codecs = RTCRtpSender.getCapabilities("video").codecs
            camera.setCodecPreferences([c for c in codecs if c.mimeType == video_codec])
        return await self._negotiate()

    async def play(self, kinds: tuple[str, ...] = ("video", "audio")) -> str:
        """WHEP: what a player asks for, recvonly; counts what it decodes."""
        for kind in kinds:
            self.pc.addTransceiver(kind, direction="recvonly")

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._readers.append(asyncio.create_task(self._read(track)))

        return await self._negotiate()

    async def _negotiate(self) -> str:
        # No trickle: gather every candidate first, then POST one complete offer
        # (RFC 9725 §4.3.1 lets a client do so).
        with gather_on(self.hosts):
            await self.pc.setLocalDescription(await self.pc.createOffer())
        response = await self.http.post(
            self.endpoint,
            content=self.pc.localDescription.sdp.encode(),
            headers={**self._auth(), "Content-Type": SDP},
        )
        self.response = response
        if response.status_code != 201:
            raise WhipError(response)
        assert response.headers["content-type"].startswith(SDP)
        # The resource's URL, relative to the endpoint's (RFC 9725 §4.2).
        self.location = str(response.url.join(response.headers["location"]))
        await self.pc.setRemoteDescription(RTCSessionDescription(response.text, "answer"))
        return response.text

    async def _read(self, track: MediaStreamTrack) -> None:
        kind = track.kind
        got = self._got.setdefault(kind, asyncio.Event())
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                self.frames[kind] = self.frames.get(kind, 0) + 1
                if kind == "video":
                    self.sizes.add((frame.width, frame.height))
                got.set()

    async def wait_frames(self, kind: str, count: int, timeout: float) -> int:
        got = self._got.setdefault(kind, asyncio.Event())
        async with asyncio.timeout(timeout):
            while self.frames.get(kind, 0) < count:
                got.clear()
                await got.wait()
        return self.frames[kind]

    async def stop(self) -> httpx.Response | None:
        """DELETE the resource (if there is one) and close the peer connection."""
        response = None
        if self.location is not None:
            response = await self.http.delete(self.location, headers=self._auth())
        await self.close()
        return response

    async def close(self) -> None:
        for task in self._readers:
            task.cancel()
        for sender in self.pc.getSenders():
            if sender.track is not None:
                sender.track.stop()
        await self.pc.close()
