"""Bytes only: the formats a packet takes on the wire, parsed and built, no behaviour.

RTP headers and padding (`rtp`), the VP8 payload descriptor and frame cutting
(`vp8`), RED (`red`), transport-wide feedback (`twcc`), the media clock rates
(`rates`) and the rewriting of SDP candidates (`sdp`). Nothing here imports the rest of `media`.
"""
