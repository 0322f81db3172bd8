"""Every place the relay reaches into aiortc's (and aioice's) private API, and nothing else.

aiortc 1.16 is pinned (pyproject.toml) and tests/media/test_aiortc_internals.py
checks each assumption made here, so an upgrade that changes one fails loudly there
instead of silently in a lesson. One module per reach-in:

- `hooks`: aioice's `get_host_addresses` and `StunProtocol.request`, receivers'
  `get_decoder`: gathering on chosen addresses; consent checks that survive a
  satellite's round trip; cheap decoders for load generators.
- `rtcp`: a sender's `_handle_rtcp_packet` and `_send_rtcp`: PLI/FIR and REMB in
  packet mode; a round trip from every SR answered; idle senders report less.
- `transport`: a sender's `__transport`: pacing in front of it; a direct wire to
  SRTP and the socket.
- `sender`: a sender's `_run_rtp`, `_retransmit` and (video) `_run_rtcp`: VP8 cut
  once per layer, one way of making packets; resends within a budget; reports four
  times a second; padding for probes.
- `twcc`: a transceiver's `_headerExtensions` and `_codecs`, the DTLS transport's
  `_handle_rtcp_data`: transport-wide congestion control negotiated, every packet
  numbered, the browser's transport feedback read.
- `red`: a transceiver's `_codecs`, senders' `get_encoder`: RED (RFC 2198) for the
  teacher's audio.
- `srtp`: the DTLS transport's `_setup_srtp`, `_rx_srtp` and `_tx_srtp`, pylibsrtp's
  `Session._srtp`: every packet protected and unprotected in one libsrtp call.
- `guard`: the DTLS transport's `_handle_rtp_data` and `_handle_rtcp_data`: a packet
  that aiortc's parsers cannot read (and raise `struct.error` on) is dropped instead
  of ending the participant's receive loop; a receiver's `_handle_rtp_packet` and
  `__remote_streams`: packets from a bounded number of SSRCs.
- `inbound`: a receiver's `_send_rtcp_pli`, `_send_rtcp_nack`, `__remote_streams`,
  `__decoder_queue`, `__jitter_buffer` and its track's `_queue`, an ICE connection's
  `_protocols`: what the relay received and did with it (media.control.ingest), a
  jitter buffer's lost packet skipped, sockets with room for a late loop.
- `ice_sessions`: `Connection.gather_candidates` (wrapped) and `_closing`: the sessions
  a one-port transport lets strangers into by a signed check, and the hook that
  offers its candidates.
- `ice_tcp`: a `Connection`'s `_local_candidates` and `_protocols`, `StunProtocol`'s
  `receiver`, `local_candidate` and `transport`: ICE over TCP (RFC 6544), the relay's
  passive candidates at one port, beside aioice's UDP.
- `ice_udp`: the same, and `StunProtocol.transactions`: one UDP port for every
  session, in place of aioice's per-session sockets.
- `peer` and `offer` use public API only: the peer connection the relay answers
  with, and an offer checked against the role's slots before aiortc sees it.
"""
