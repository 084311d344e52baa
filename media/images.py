"""Still images: a photo given to replay as the camera."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError


class ImageInputError(ValueError):
    """A file that cannot be used as a camera still; the message is one line."""


def load_still(path: Path, max_side: int = 640) -> tuple[bytes, tuple[int, int], str]:
    """The photo as raw RGB bytes, its size and format, as a camera frame would carry it."""
    if not path.exists():
        raise ImageInputError(f"{path}: no such file")
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageInputError(f"{path}: not a readable image ({exc})") from None
    rgb.thumbnail((max_side, max_side))
    return rgb.tobytes(), rgb.size, "RGB"
