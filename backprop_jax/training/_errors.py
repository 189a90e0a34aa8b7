"""The errors of a run with files, in the terms of ``run``'s arguments."""


class RunInterrupted(RuntimeError):
    """``run``'s ``stop`` asked training to end: raised after a checkpoint of the iteration reached
    was written (with ``out``), so that the run resumes from there."""

    def __init__(self, reason: str, iteration: int, checkpoint: int | None) -> None:
        super().__init__(f"interrupted ({reason}) at iteration {iteration}")
        self.reason, self.iteration, self.checkpoint = reason, iteration, checkpoint


class RunError(RuntimeError):
    """The output directory cannot be used as asked: it is not a writable directory, another run is
    using it, it holds another run, or one with other settings or data.

    ``argument`` names the argument of ``run`` at fault (``"out"`` or ``"resume"``), for a caller
    that words the message in its own terms (the command line: ``--out``, ``--resume``)."""

    def __init__(self, message: str, argument: str | None = None) -> None:
        super().__init__(message)
        self.argument = argument


class CheckpointWriteError(RunError):
    """A checkpoint could not be written (no space left, the file size limit, the directory
    removed, ...); the checkpoints before it and ``metrics.json`` are kept. orbax's writes still
    in flight may print leftovers as the process ends (``drop_event_loop_leftovers``)."""
