"""The FR training regime in one word (no torch): what tables, tags and cards call a run's objective."""

from __future__ import annotations

from pathlib import PurePath

LABELS = "labels"


def teacher_name(teacher: str) -> str:
    """A teacher as tables name it: a registered encoder's name, or a file's or folder's stem."""
    return teacher if "/" not in teacher and "." not in teacher else PurePath(teacher).stem


def regime(objective: str, teacher: str | None) -> str:
    """``labels``, ``distill:dlib``, ``both:sface``: the objective and, unless it is the labels, the teacher."""
    if objective in (LABELS, "", "None") or not teacher:
        return LABELS
    return f"{objective}:{teacher_name(teacher)}"
