"""The benchmark's baseline: the same session assembled from stock pipecat services, defaults kept.

transport in -> VADProcessor(Silero) -> WhisperSTTService (segmented, same model files)
             -> LLMUserAggregator (default turn strategies: VAD start, Smart Turn v3 stop)
             -> [turn text] -> the same brain -> Piper (its own voice) -> transport out

Every model is the session's own, loaded when the session is built, as pipecat's services do
by default: Silero, Whisper, Smart Turn (inside the aggregator's default strategy) and the Piper
voice (``PiperTTSService`` loads the voice file itself; the product shares one per process).
"""

from __future__ import annotations

from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import Frame, LLMContextFrame, TranscriptionFrame
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.piper.tts import PiperTTSService
from pipecat.services.whisper.stt import WhisperSTTService
from pipecat.utils.time import time_now_iso8601

from agent.backends.base import BrainBackend
from configs.settings import Settings
from pipeline.session import SessionContext, agent_processors, voice_model, whisper_dir


class ContextToTurn(FrameProcessor):
    """Hands the aggregator's finished user turn to the brain as a final transcription."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMContextFrame):
            users = [m for m in frame.context.get_messages() if m.get("role") == "user"]
            if users:
                content = users[-1].get("content")
                text = (
                    content
                    if isinstance(content, str)
                    else " ".join(part.get("text", "") for part in content or [] if isinstance(part, dict))
                )
                await self.push_frame(
                    TranscriptionFrame(
                        text=text, user_id="patient", timestamp=time_now_iso8601(), finalized=True
                    )
                )
            return
        await self.push_frame(frame, direction)


def baseline_session(
    settings: Settings, backend: BrainBackend, context: SessionContext
) -> list[FrameProcessor]:
    stt = WhisperSTTService(model=str(whisper_dir(settings)), device="cpu")
    user_aggregator = LLMContextAggregatorPair(LLMContext()).user()
    vad = VADProcessor(vad_analyzer=SileroVADAnalyzer())
    *thinking, _shared_voice, _reply_gate = agent_processors(settings, backend, context)  # no drafts here
    model = voice_model(settings)
    tts = PiperTTSService(download_dir=model.parent, settings=PiperTTSService.Settings(voice=model.stem))
    return [vad, stt, user_aggregator, ContextToTurn(), *thinking, tts]
