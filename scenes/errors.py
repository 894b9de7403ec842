"""Errors raised by the description layer.

A `SceneError` always names *where* the problem is: a dotted field path inside the
scene description (``props[2].material``), and, when the scene came from a file,
the file and line. The file loader fills in ``file`` and ``line``; code that
validates a description only knows the path.
"""
from __future__ import annotations


class SceneError(ValueError):
    """Invalid scene description.

    Attributes:
        path: dotted field path inside the description, e.g. ``"props[2].material"``
            ("" for the scene as a whole).
        reason: what is wrong, in words.
        choices: the valid choices, when there is a finite set of them.
        file: source file, when the description was loaded from one.
        line: 1-based line in ``file`` of the offending key or value.
    """

    def __init__(self, path: str, reason: str, *, choices=None, file: str | None = None,
                 line: int | None = None):
        self.path = path
        self.reason = reason
        self.choices = list(choices) if choices is not None else None
        self.file = file
        self.line = line
        super().__init__(self._format())

    def _format(self) -> str:
        where = ""
        if self.file is not None:
            where = f"{self.file}:{self.line}: " if self.line is not None else f"{self.file}: "
        field = f"field '{self.path}': " if self.path else ""
        msg = f"{where}{field}{self.reason}"
        if self.choices:
            msg += f" (valid choices: {', '.join(map(str, self.choices))})"
        return msg

    def located(self, file: str, line: int | None) -> "SceneError":
        """Return a copy of this error that names the file and line."""
        return SceneError(self.path, self.reason, choices=self.choices, file=file, line=line)

    def __reduce__(self):  # keeps the error picklable across process pools
        return (_rebuild, (self.path, self.reason, self.choices, self.file, self.line))


def _rebuild(path, reason, choices, file, line):
    return SceneError(path, reason, choices=choices, file=file, line=line)


class ChoreographyError(SceneError):
    """A physically impossible or inconsistent request (a jump too far, a target
    out of reach in the time given). The message says why and what would work."""
