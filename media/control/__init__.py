"""Pure decisions: feedback in, a decision out; the clock is passed in.

The estimator reads a downlink's RTCP feedback (`feedback`, `estimator`), or,
where the browser sends transport feedback, `sendside` estimates it as GCC's
sender does; the
allocator shares the estimate out over a participant's slots, probes included
(`allocator`); `downlink` joins the two per participant. `pacer` spreads video
and budgets resends and padding, `keyframes` merges keyframe requests, `meter`
measures what a layer costs. Nothing here touches aiortc or sockets.
"""
