"""Prometheus metrics of the voice loop (exposed by ``GET /metrics``)."""

from enum import StrEnum

from prometheus_client import Counter, Gauge, Histogram


class TurnStage(StrEnum):
    """The stages of voice-to-voice latency (the ``stage`` label of ``stage_latency_seconds``)."""

    END_OF_TURN = "end_of_turn"
    FINAL_TRANSCRIPTION = "final_transcription"
    FIRST_AUDIO = "first_audio"


class EscalationCause(StrEnum):
    """Why a clinician was called (the ``cause`` label of ``escalations_total``)."""

    RED_FLAG = "red_flag"  # the triage's assessment of what the patient said or showed
    SECOND_OPINION = "second_opinion"  # the model's second opinion
    BRAIN_FAILURE = "brain_failure"  # the model backend failed, timed out or said nothing
    PROCESSOR_FAILURE = "processor_failure"  # a processor of the session failed (pipeline/fail_safe.py)
    PATIENT_REQUEST = "patient_request"  # the patient pressed the button or 0


VOICE_TO_VOICE_SECONDS = Histogram(
    "voice_to_voice_latency_seconds",
    "From the end of the patient's speech to the agent's first audio.",
    buckets=(0.3, 0.5, 0.7, 0.8, 0.9, 1.0, 1.2, 1.5, 2.0, 3.0, 5.0),
)
# The same moments in the runbook's name and unit. Buckets every 100 ms up to the 2 s service level
# (p50 and p95 read well below it), then coarser past it (p99 of a slow box still lands in one).
PREDICTION_LATENCY_MS = Histogram(
    "prediction_latency_ms",
    "From the end of the patient's speech to the agent's first audio, in milliseconds (SLO: p95 <= 2000).",
    buckets=(
        *(100.0 * step for step in range(1, 21)),  # 100 .. 2000
        2500.0,
        3000.0,
        4000.0,
        5000.0,
        7500.0,
        10000.0,
    ),
)
ACTIVE_SESSIONS = Gauge("active_sessions", "Patient sessions in progress.")
# Set once by the session host: active_sessions / session_capacity is how full the box is.
SESSION_CAPACITY = Gauge(
    "session_capacity", "Patient sessions this server admits at once (SESSIONS__MAX_CONCURRENT)."
)
SESSIONS_TOTAL = Counter("sessions_total", "Patient sessions started.", ["transport"])
# A patient turned away because every line was taken (the 503 of /api/offer, the phone's 503).
SESSIONS_REFUSED_TOTAL = Counter(
    "sessions_refused", "Patient sessions refused because every line was taken (SESSIONS__MAX_CONCURRENT)."
)
ESCALATIONS_TOTAL = Counter("escalations_total", "Escalations raised.", ["level", "cause"])
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
# The model backend (its ``name``: mock, local, cloud, openai) gave no reply in time, or failed;
# each ends in an escalation (brain_failure). A run of them is a backend that is down.
MODEL_BACKEND_TIMEOUTS_TOTAL = Counter(
    "model_backend_timeouts", "Replies the model backend did not give within LLM__TIMEOUT_S.", ["backend"]
)
MODEL_BACKEND_ERRORS_TOTAL = Counter(
    "model_backend_errors", "Replies the model backend failed with an error.", ["backend"]
)
# 1 while the phone bridge of this process listens (its port); 0 once it stopped. No series in a
# process without a bridge, so "down" is never reported where there is none.
SIP_BRIDGE_UP = Gauge("sip_bridge_up", "The phone bridge of this process is listening.", ["port"])
# 1 while the clinician queue's latest write of a record failed or a write hangs (the /health
# "storage": "failing"): escalations are shown but not on disk. Set from the queue by web/app.py.
ESCALATION_STORE_FAILING = Gauge(
    "escalation_store_failing", "Escalation records are not being written (1) or are (0)."
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
    for _cause in EscalationCause:
        ESCALATIONS_TOTAL.labels(level=_level, cause=_cause.value)
for _stage in ("handoff", "record", "store"):
    ESCALATION_FAILURES_TOTAL.labels(stage=_stage)
for _transport in ("webrtc", "sip"):
    SESSIONS_TOTAL.labels(transport=_transport)
RETRIEVALS_TOTAL.labels(matched_on="text")
for _turn_stage in TurnStage:
    STAGE_LATENCY_SECONDS.labels(stage=_turn_stage.value)
