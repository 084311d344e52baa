"""How the patient reaches the agent, as far as the triage is concerned: can they show the skin?"""

from __future__ import annotations

from enum import StrEnum


class Channel(StrEnum):
    """``VIDEO``: a browser with a camera; ``AUDIO``: a phone call, or no camera at all.

    An audio-only patient cannot show the skin, so the interview asks them to describe it.
    """

    VIDEO = "video"
    AUDIO = "audio"
