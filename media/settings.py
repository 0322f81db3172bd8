"""What the operator decides about the relay: addresses, STUN, budgets.

Built by the caller (signaling's settings, a test, the benchmark) and passed in;
nothing here is read from the environment at import.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RelaySettings:
    # Host addresses ICE gathers candidates on. Empty: every interface except
    # loopback (aioice's own choice). Tests and benchmarks use ("127.0.0.1",).
    host_addresses: tuple[str, ...] = ()
    # Address written into the answer's host candidates in place of the real one,
    # for a server behind a 1:1 NAT (mediasoup calls it announcedAddress).
    announced_address: str | None = None
    # ICE over TCP (RFC 6544, media.adapter.ice_tcp): browsers whose firewall drops UDP
    # reach the relay at this one TCP port, on host_addresses (every interface if
    # none), through a passive candidate ranked below every UDP path. None: UDP only.
    ice_tcp_port: int | None = None
    # One UDP port for every peer (media.adapter.ice_udp): the host candidates offered
    # are at this port, on host_addresses (those aioice finds if none), instead of a
    # port of their own per peer. None: aioice's ephemeral ports.
    ice_udp_port: int | None = None
    # STUN servers ("stun:host:port"). None of them by default: aiortc would
    # otherwise fall back to a public Google server.
    stun_servers: tuple[str, ...] = ()
    # At most one forced keyframe per layer per this many seconds: a storm of
    # PLI/FIR (RFC 4585 §6.3.1, RFC 5104 §4.3.1) yields one keyframe.
    keyframe_min_interval_s: float = 1.0
    # A subscriber's queue, in encoded frames. At 15 fps, 30 frames is 2 s of
    # video: more than that and the receiver is better served by a fresh keyframe.
    video_queue_frames: int = 30
    # Audio is 25 packets a second (40 ms each); 12 packets is half a second of delay at most.
    audio_queue_packets: int = 12
    # How often link reports are produced.
    report_interval_s: float = 1.0
    # Choose each participant's layers from its own RTCP feedback (media.control.downlink);
    # off, every slot carries the layer set with Relay.set_layer (default "high"),
    # and the estimate is only reported.
    adaptive: bool = True
    # How often the downlinks are looked at: a drop is acted on within this much.
    allocation_interval_s: float = 0.5
    # Probe a downlink for more with padding on a video sender's RTX stream, where
    # negotiated (media.control.allocator); off, probes switch layers up and see.
    probe_with_padding: bool = True
    # Send the teacher's audio as RED (RFC 2198, media.wire.red) to browsers that offer
    # it: each packet also carries the one before, so a single loss costs nothing
    # audible, for ~30 kbit/s more per classroom.
    audio_red: bool = True
    # Estimate each browser's downlink from its transport feedback
    # (media.control.sendside), where it offers transport-cc; off, from its REMB
    # and receiver reports (media.control.estimator).
    transport_cc: bool = True
    # On a long round trip (FEC_MIN_RTT_MS), send the cameras with ULPFEC in RED
    # (media.wire.ulpfec) to browsers that offer it: a lost packet is rebuilt on
    # arrival instead of after a resend's round trip, for a third more camera rate.
    video_fec: bool = True
    # Threads encoding video layers (libvpx releases the GIL while encoding).
    encoder_threads: int = 4
