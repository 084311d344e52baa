"""The soak benchmark measures what it says: real WebRTC patients, their escalations, memory."""

from __future__ import annotations

import pytest

from tools.soak import soak


@pytest.mark.slow
async def test_two_real_webrtc_patients_one_with_a_red_flag_are_served_and_escalated() -> None:
    report = await soak(sessions=2, concurrent=1)
    assert report.failures == [] and report.crashes == 0
    assert report.agent_replied == 2  # each patient heard the agent answer their sentence
    assert (report.red_flag_sessions, report.red_flags_escalated, report.escalations_lost) == (1, 1, 0)
    assert report.benign_escalated == 0  # the patient with a rash was not escalated
    assert report.rss_start_mib > 0 and report.rss_end_mib > 0
