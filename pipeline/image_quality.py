"""Is this camera frame good enough to look at skin? Sharpness, light, exposure, distance."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Thresholds for a 640x480 phone or laptop camera frame, on 0-255 grey levels.
MIN_SHARPNESS = 60.0  # variance of the Laplacian: lower is blurry
MIN_BRIGHTNESS = 45.0
MAX_CLIPPED_SHARE = 0.25  # share of pixels at >= 250: over-exposed
MIN_DETAIL_SHARE = 0.02  # share of edge pixels: below this the skin is too far or out of view


@dataclass(frozen=True)
class FrameQuality:
    verdict: str  # ok | blurry | dark | overexposed | too_far
    sharpness: float
    brightness: float
    score: float  # higher is a better frame to keep

    @property
    def usable(self) -> bool:
        return self.verdict == "ok"


def judge(rgb: np.ndarray) -> FrameQuality:
    """Judge an RGB frame (H x W x 3, uint8)."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    sharpness = float(cv2.Laplacian(grey, cv2.CV_64F).var())
    brightness = float(grey.mean())
    clipped = float((grey >= 250).mean())
    edges = float((cv2.Canny(grey, 50, 150) > 0).mean())
    if brightness < MIN_BRIGHTNESS:
        verdict = "dark"
    elif clipped > MAX_CLIPPED_SHARE:
        verdict = "overexposed"
    elif sharpness < MIN_SHARPNESS:
        verdict = "blurry"
    elif edges < MIN_DETAIL_SHARE:
        verdict = "too_far"
    else:
        verdict = "ok"
    exposure = 1.0 - abs(brightness - 128.0) / 128.0
    score = (1.0 if verdict == "ok" else 0.0) + min(sharpness, 1000.0) / 1000.0 * 0.5 + exposure * 0.5
    return FrameQuality(verdict, sharpness, brightness, score)


ADVICE = {
    "blurry": "The picture is blurry. Please hold the camera still, a little further away, so it can focus.",
    "dark": "The picture is too dark. Could you move to a brighter spot or turn on a light?",
    "overexposed": "The picture is too bright. Could you move away from direct light or the window?",
    "too_far": "I can't see the skin clearly. Could you bring the camera closer to the area?",
}
