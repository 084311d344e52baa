"""Prometheus metrics of the voice loop (exposed by ``GET /metrics``)."""

from enum import StrEnum

from prometheus_client import Counter, Gauge, Histogram


class TurnStage(StrEnum):
    """The stages of voice-to-voice latency (the ``stage`` label of ``stage_latency_seconds``)."""

    END_OF_TURN = "end_of_turn"
    FINAL_TRANSCRIPTION = "final_transcription"
    FIRST_AUDIO = "first_audio"


VOICE_TO_VOICE_SECONDS = Histogram(
    "voice_to_voice_latency_seconds",
    "From the end of the patient's speech to the agent's first audio.",
    buckets=(0.3, 0.5, 0.7, 0.8, 0.9, 1.0, 1.2, 1.5, 2.0, 3.0, 5.0),
)
ACTIVE_SESSIONS = Gauge("active_sessions", "Patient sessions in progress.")
# Set once by the session host: active_sessions / session_capacity is how full the box is.
SESSION_CAPACITY = Gauge(
    "session_capacity", "Patient sessions this server admits at once (SESSIONS__MAX_CONCURRENT)."
)
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

# The turn-taking figures (pipeline/turn_observers.py), from the frames of each session, each
# frame at the time it was pushed (the pipeline clock). A reply the end of turn called too soon:
# the patient paused, the agent started answering, and the patient went on before any of it was
# heard, so the answer was dropped. A rising rate means the end of turn cuts patients off.
REPLIES_DROPPED_TOTAL = Counter(
    "replies_dropped",
    "Agent replies dropped unheard because the patient went on: the patient's turn ended, a reply"
    " began (LLMFullResponseStartFrame), and a new patient turn (UserStartedSpeakingFrame) came"
    " before the agent's audio started (BotStartedSpeakingFrame); and replies to a draft turn"
    " (preemptive generation) dropped because the patient went on (PreemptiveTurnSettledFrame, not"
    " kept). Not counted while escalated.",
)
BARGE_IN_STOP_SECONDS = Histogram(
    "barge_in_stop_seconds",
    "From the patient's speech onset while the agent speaks (VADUserStartedSpeakingFrame minus the"
    " VAD's start_secs, between BotStarted- and BotStoppedSpeakingFrame) to the agent's audio"
    " stopping (BotStoppedSpeakingFrame).",
    buckets=(0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.0, 5.0),
)
STAGE_LATENCY_SECONDS = Histogram(
    "stage_latency_seconds",
    "Voice-to-voice by stage, each from where the one before ends. end_of_turn: the patient's speech"
    " end (VADUserStoppedSpeakingFrame minus the VAD's stop_secs) to the turn's end (the first of"
    " the final TranscriptionFrame and UserStoppedSpeakingFrame); final_transcription: the turn's"
    " end to the final TranscriptionFrame (0 when the text came first); first_audio: the final"
    " TranscriptionFrame to the agent's first audio (the first TTSAudioRawFrame or"
    " BotStartedSpeakingFrame).",
    ["stage"],
    buckets=(0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0),
)

# Zero series from the start, so dashboards and alerts see "none yet" rather than "no data".
for _level in ("emergency", "urgent"):
    ESCALATIONS_TOTAL.labels(level=_level)
for _stage in ("handoff", "record", "store"):
    ESCALATION_FAILURES_TOTAL.labels(stage=_stage)
for _transport in ("webrtc", "sip"):
    SESSIONS_TOTAL.labels(transport=_transport)
RETRIEVALS_TOTAL.labels(matched_on="text")
for _turn_stage in TurnStage:
    STAGE_LATENCY_SECONDS.labels(stage=_turn_stage.value)
