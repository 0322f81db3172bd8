"""Why a command was refused. Messages are shown to people as they are."""


class DomainError(Exception):
    """A command the lesson refuses; nothing changed."""

    code = "refused"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotAllowed(DomainError):
    """The actor's role may not do this."""

    code = "not_allowed"


class InvalidTransition(DomainError):
    """The lesson is not in a state where this makes sense (hand already raised...)."""

    code = "invalid_transition"


class InvalidCommand(DomainError):
    """A value in the command is unusable (an empty name, an unknown classroom...)."""

    code = "invalid_command"


class NotFound(DomainError):
    """The school, room, teacher or timetable entry named does not exist."""

    code = "not_found"


class Conflict(DomainError):
    """What is asked clashes with what exists: a name taken, a room still timetabled."""

    code = "conflict"


class Overlap(Conflict):
    """Two lessons would share a room (or a teacher) at the same time."""

    code = "overlap"
