"""County edge relays: an edge serves its village classrooms' media from one pull of
each lesson from the origin (docs/protocol.md, "Edge relays")."""
