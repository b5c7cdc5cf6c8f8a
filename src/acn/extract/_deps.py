"""Lazy imports of the optional video libraries (``pip install acn[video]``).

The core package does not need PyAV or OpenCV, so nothing imports them at module level; the
first function that needs one calls these helpers and gets a clear :class:`AcnError` if absent.
"""

from __future__ import annotations

from types import ModuleType

from acn.errors import AcnError

_HINT = "pip install acn[video]"


def have_av() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def require_av() -> ModuleType:
    try:
        import av
    except ImportError:
        raise AcnError(f"video decoding needs PyAV, which is not installed ({_HINT})") from None
    return av


def require_cv2(what: str = "optical flow and resizing") -> ModuleType:
    try:
        import cv2
    except ImportError:
        raise AcnError(f"{what} needs OpenCV, which is not installed ({_HINT}, which brings "
                       "opencv-contrib-python-headless)") from None
    return cv2


def require_optflow() -> ModuleType:
    """OpenCV with the contrib ``optflow`` module (where TV-L1 lives)."""
    cv2 = require_cv2("TV-L1 optical flow")
    if not hasattr(cv2, "optflow"):
        raise AcnError("TV-L1 needs OpenCV's contrib modules (cv2.optflow); the installed OpenCV "
                       "lacks them: replace opencv-python with opencv-contrib-python-headless "
                       f"({_HINT}), or use --flow dis / --flow farneback")
    return cv2
