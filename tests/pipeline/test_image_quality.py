"""Frame quality: the agent asks for better light, focus or distance when a frame is unusable."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.image_quality import ADVICE, judge


def skin_photo(brightness: int = 150) -> np.ndarray:
    """A textured skin-toned frame with a dark mole: detail the camera should see."""
    rng = np.random.default_rng(1)
    img = np.zeros((480, 640, 3), dtype=np.float32)
    img[:] = (brightness + 40, brightness, brightness - 30)
    img += rng.normal(0, 18, img.shape)
    cv2.circle(img, (320, 240), 40, (70, 45, 35), -1)
    for y in range(0, 480, 12):
        cv2.line(img, (0, y), (640, y + 20), (brightness - 20,) * 3, 1)
    return np.clip(img, 0, 255).astype(np.uint8)


def test_a_sharp_well_lit_close_up_is_usable() -> None:
    quality = judge(skin_photo())
    assert quality.usable, quality


@pytest.mark.parametrize(
    ("frame", "verdict"),
    [
        (lambda: (skin_photo() * 0.15).astype(np.uint8), "dark"),
        (lambda: np.full((480, 640, 3), 255, dtype=np.uint8), "overexposed"),
        (lambda: cv2.GaussianBlur(skin_photo(), (31, 31), 12), "blurry"),
    ],
)
def test_unusable_frames_are_named_and_have_advice(frame, verdict: str) -> None:
    quality = judge(frame())
    assert quality.verdict == verdict
    assert not quality.usable
    assert ADVICE[verdict]


def test_a_better_frame_scores_higher_than_a_blurry_one() -> None:
    assert judge(skin_photo()).score > judge(cv2.GaussianBlur(skin_photo(), (31, 31), 12)).score
