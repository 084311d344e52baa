"""Prometheus metrics of the voice loop (exposed by ``GET /metrics``)."""

from prometheus_client import Counter, Gauge, Histogram

VOICE_TO_VOICE_SECONDS = Histogram(
    "voice_to_voice_latency_seconds",
    "From the end of the patient's speech to the agent's first audio.",
    buckets=(0.3, 0.5, 0.7, 0.8, 0.9, 1.0, 1.2, 1.5, 2.0, 3.0, 5.0),
)
ACTIVE_SESSIONS = Gauge("active_sessions", "Patient sessions in progress.")
SESSIONS_TOTAL = Counter("sessions_total", "Patient sessions started.", ["transport"])
ESCALATIONS_TOTAL = Counter("escalations_total", "Escalations raised.", ["level"])
# Alert on any increase: "handoff" is an escalation no clinician queue took (the session stays
# free to escalate again), "record" one sent without its transcript and summary (building them
# failed), "store" a record a session without a queue could not write.
ESCALATION_FAILURES_TOTAL = Counter(
    "escalation_failures_total", "Escalations that could not be completed as made.", ["stage"]
)
# Every processor error of a session, each turned into an escalation (pipeline/fail_safe.py).
PROCESSOR_ERRORS_TOTAL = Counter(
    "processor_errors_total", "Processor errors in patient sessions, each escalated.", ["processor"]
)
# The voice failed on a line that calls for help, and the audio kept at start-up was played.
SAFETY_AUDIO_PLAYED_TOTAL = Counter(
    "safety_audio_played_total", "Safety lines played from the audio kept at start-up."
)
PREDICTION_CONFIDENCE = Histogram(
    "prediction_confidence",
    "Confidence of the triage assessment at the end of each patient turn.",
    buckets=(0.1, 0.25, 0.5, 0.75, 0.9, 1.0),
)
RETRIEVALS_TOTAL = Counter("retrievals_total", "Similar-case retrievals run.", ["matched_on"])

# Zero series from the start, so dashboards and alerts see "none yet" rather than "no data".
for _level in ("emergency", "urgent"):
    ESCALATIONS_TOTAL.labels(level=_level)
for _stage in ("handoff", "record", "store"):
    ESCALATION_FAILURES_TOTAL.labels(stage=_stage)
for _transport in ("webrtc", "sip"):
    SESSIONS_TOTAL.labels(transport=_transport)
RETRIEVALS_TOTAL.labels(matched_on="text")
