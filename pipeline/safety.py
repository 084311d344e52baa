"""The safety layer: three small processors between the brain and the voice.

    brain -> [second opinion] -> escalation -> clinician presence -> spoken guard -> Piper

* ``EscalationProcessor`` (``pipeline/escalation.py``): a red flag met, in the turn's one
  assessment (``ClinicalStateFrame``, even mid-phrase), by the model's second opinion, by a brain
  that failed or by a patient who asked, becomes an escalation at once: the agent stops, says
  what happens next, and the typed ``EscalationRecord`` goes out in an ``EscalationFrame``;
* ``ClinicianPresenceProcessor`` (``pipeline/clinician_presence.py``): keeps the patient company
  until a clinician joins, announces them, summarises on request, resumes or says goodbye when
  they leave;
* ``SpokenGuardProcessor`` (``pipeline/spoken_guard.py``): every sentence the agent says passes
  the language guard, replies get the disclaimer when it is due, and every turn is reported.

Nothing the agent says bypasses the guard; the escalation and presence processors say their own
lines through it as written (``AgentLineFrame``). The assessment they act on is made before the
brain (triage, then similar-case evidence: ``pipeline/case_evidence.py``), so the brain and the
escalation read the same one.
"""

from __future__ import annotations

from pipecat.processors.frame_processor import FrameProcessor

from agent.channel import Channel
from agent.escalation import EscalationStore
from agent.policy import Policy, default_policy
from pipeline.clinician_presence import ClinicianPresenceProcessor
from pipeline.escalation import EscalationProcessor
from pipeline.spoken_guard import SpokenGuardProcessor


def safety_processors(
    *,
    session_id: str,
    store: EscalationStore | None,
    emergency_number: str = "911",
    channel: Channel = Channel.VIDEO,
    disclaimer_every_turns: int = 3,
    policy: Policy | None = None,
    reassure_every_s: float = 45.0,
    repeat_emergency_after_s: float = 180.0,
    resumes_escalation: str | None = None,
) -> list[FrameProcessor]:
    """The safety layer, in order: escalation, clinician presence, spoken guard.

    ``store`` keeps the escalation records of a session no clinician queue watches; None when a
    queue does (``EscalationObserver``), as in every session the product builds.
    ``resumes_escalation``: the record a session cut off raised (``pipeline/resume.py``).
    """
    return [
        EscalationProcessor(
            session_id=session_id,
            store=store,
            emergency_number=emergency_number,
            channel=channel,
            escalate_from=(policy or default_policy()).escalate_from,
            resumes_record=resumes_escalation,
        ),
        ClinicianPresenceProcessor(
            emergency_number=emergency_number,
            reassure_every_s=reassure_every_s,
            repeat_emergency_after_s=repeat_emergency_after_s,
        ),
        SpokenGuardProcessor(disclaimer_every_turns=disclaimer_every_turns),
    ]
