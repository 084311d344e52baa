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
PREDICTION_CONFIDENCE = Histogram(
    "prediction_confidence",
    "Confidence of the triage assessment at the end of each patient turn.",
    buckets=(0.1, 0.25, 0.5, 0.75, 0.9, 1.0),
)
RETRIEVALS_TOTAL = Counter("retrievals_total", "Similar-case retrievals run.", ["matched_on"])

# Zero series from the start, so dashboards and alerts see "none yet" rather than "no data".
for _level in ("emergency", "urgent"):
    ESCALATIONS_TOTAL.labels(level=_level)
for _transport in ("webrtc", "sip"):
    SESSIONS_TOTAL.labels(transport=_transport)
RETRIEVALS_TOTAL.labels(matched_on="text")
