"""The errors a user of the IR sees. Nothing else escapes the parser or the verifier."""


class IRSyntaxError(ValueError):
    """Malformed IR text; carries the line and column (1-based) where reading failed."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None):
        self.line, self.column = line, column
        where = f"line {line}, column {column}: " if line is not None else ""
        super().__init__(where + message)


class IRTypeError(TypeError):
    """A well-formed but ill-typed program; the message names the offending equation."""


class ShapeError(TypeError):
    """A primitive was applied to operands of shapes/dtypes it cannot take (raised while tracing)."""


class ConcretizationError(TypeError):
    """A traced (abstract) value was used where Python needs a concrete one, e.g. `if x > 0:`."""
