"""Relay workers: the media of one machine's lessons in several processes.

One Python process sends every classroom's packets from one event loop, which a
single core bounds. `classroom serve --workers N` keeps signaling in the server's
process and runs N relay processes (`worker`), each its own `Relay`; the server
drives them through `WorkerGateway`, the same `MediaGateway` the relay is, over a
local socket (`channel`). A lesson is placed on the least-loaded worker
(`placement`) and stays there; a lesson bigger than one worker spans several, its
home worker's layers pulled by the others for their classrooms (`follower`).
"""
