"""Names vulture reports as unused that are used: reviewed, each with its reason.

vulture (`scripts/test.sh`, settings in pyproject.toml) finds code nothing calls. These are
called by a framework or a protocol, read by serialisation, or held on purpose. Anything new
here needs a reason; dead code is deleted instead.
"""

# ruff: noqa: F821, B018
# fmt: off

# Called by asyncio (DatagramProtocol / Protocol callbacks).
_.connection_made
_.datagram_received
_.error_received
_.connection_lost

# Called by pipecat: observer hooks, transport output, event handlers registered by decorator.
_.on_push_frame
_.write_audio_frame
_closed
_connected
_gone

# Read by aiortc from a MediaStreamTrack's frames.
_.time_base

# Called by pydantic-settings, presidio, itsdangerous, logging, transformers, http.server, uvicorn.
_.model_config
model_config
_.settings_customise_sources
file_secret_settings  # part of the overridden signature
_.get_field_value
_._production_is_strict  # a model validator, run by pydantic
_.validate_result
nlp_artifacts  # part of presidio's signature
_.get_timestamp
_.msg  # the log record's message, rewritten before it is formatted
_.process_log_record  # python-json-logger's hook
_.handleError  # logging.Handler's hook
_.eos_token_id  # read by generate()
_.daemon_threads
_.protocol_version
protocol_version
_.log_message
_.do_GET
_.do_POST  # http.server's hook (the OTLP receiver of tests/pipeline/test_tracing.py)
_.close_connection
_.should_exit
_.get_host_addresses  # aioice: patched so tests stay on loopback
use_ipv4
use_ipv6

# The __aexit__ signature.
exc_type
tb

# Read through dataclasses.asdict / repr: JSON reports, stored records, the call-end log line.
images_listed
_.images_listed
combined_race  # a SCIN column kept with the case
rejected
_.rejected
EMERGENCY_SERVICES  # outcomes a clinician can choose, listed by iterating the enum
PATIENT_LEFT

# Held so the task is not garbage-collected while it runs (asyncio keeps only weak references).
_._closing

# pytest: module markers and fixtures used by name.
pytestmark
clean_env
models_loaded

# tools/soak.py: report fields printed through dataclasses.asdict; an aiortc event handler.
_.wall_s
_.agent_heard
_.server_errors_logged
_.per_session_mib
_track
_.benign_escalated

# tools/capacity.py: PyAV encoder settings, read by libopus / libvpx when the codec opens.
_.bit_rate
_.pix_fmt
_.framerate
_.gop_size

# media/webrtc_patient.py: pipecat's capture_participant_video signature (a Protocol and its test double).
participant_id

# media/livekit_rooms.py: pipecat event handlers (registered by decorator); tests/media/livekit_fakes.py:
# the livekit.rtc API that pipecat's LiveKit transport calls on the fakes.
_joined
queue_size_ms
_.capture_frame
_.create_audio_track
_.track_publications
_.publish_track
_.publish_data
_.sid

# pipeline/google_voice.py: pipecat's GoogleTTSService makes its client in __init__ with
# _create_client(credentials, credentials_path); ours makes it on first use instead.
_._create_client
credentials_path
