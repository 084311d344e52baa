// What the patient page does the same way in both of its modes: app.js (WebRTC to this server)
// and livekit.js (a LiveKit room). Captions, the agent's server messages (escalation, a clinician
// joining or leaving), the room's status poll, the clinician button, the microphone, mute and the
// end of a call live here once, so the two modes cannot drift apart in what the patient reads.
// Each mode makes its own page with PatientPage.create(hooks) and keeps only its connection.
"use strict";

window.PatientPage = (() => {
  const $ = (id) => document.getElementById(id);
  const ui = {
    start: $("start"), mute: $("mute"), stop: $("stop"), state: $("state"), error: $("error"),
    escalation: $("escalation"), preview: $("preview"), audio: $("agent-audio"), captions: $("captions"),
    ask: $("ask-clinician"), clinicianStatus: $("clinician-status"), clinicianFigure: $("clinician-figure"),
    clinicianVideo: $("clinician-video"), clinicianCaption: $("clinician-caption"),
  };
  // Tests feed a recorded voice as the microphone: browser voice processing would distort it.
  const processing = new URLSearchParams(location.search).get("processing") !== "off";

  // The agent judges about one camera frame a second, so while only the agent looks the camera is
  // sent at 2 frames a second (the server decodes no more); a clinician who joins sees it at the
  // full rate. Full resolution either way: the agent judges sharpness and distance on the frame.
  const CAMERA_FPS = { agent: 2, clinician: 30 };

  function setState(state, label) {
    ui.state.dataset.state = state;
    ui.state.textContent = label;
  }

  function showError(message) {
    ui.error.textContent = message;
    ui.error.hidden = !message;
  }

  function showClinicianStatus(text) {
    ui.clinicianStatus.textContent = text;
    ui.clinicianStatus.hidden = !text;
  }

  async function serverMessage(res) {
    // The server's own words for a refusal the patient should read (503 busy, 429 too many attempts).
    if (res.status !== 503 && res.status !== 429) return "";
    try { const body = await res.json(); return typeof body.error === "string" ? body.error : ""; }
    catch { return ""; }
  }

  function refusalLabel(status) {
    // The state line beside a refusal's own words: all lines busy (503), or too many attempts.
    return status === 503 ? "All lines are busy" : "Please wait";
  }

  function addCaption(who, text, cls) {
    const li = document.createElement("li");
    li.className = cls;
    const name = document.createElement("span");
    name.className = "who";
    name.textContent = who === "patient" ? "You:" : "Assistant:";
    const body = document.createElement("span");
    body.className = "text";
    body.textContent = text;
    li.append(name, body);
    ui.captions.append(li);
    li.scrollIntoView({ block: "end" });
    return li;
  }

  async function getMedia() {
    const audio = processing ? true : { echoCancellation: false, noiseSuppression: false, autoGainControl: false };
    try {
      return await navigator.mediaDevices.getUserMedia({ audio, video: { width: 640, height: 480 } });
    } catch (err) {
      if (err.name === "NotFoundError" || err.name === "OverconstrainedError") {
        // No camera: the agent can still listen.
        return await navigator.mediaDevices.getUserMedia({ audio });
      }
      throw err;
    }
  }

  // hooks, what a mode's connection knows:
  //   session() -> {id, token} or null: this patient's own session, for its room's status and the
  //     clinician button (the token goes in the X-Room-Token header, never the URL);
  //   cameraSender() -> the RTCRtpSender of the patient's camera, or null;
  //   close(): drop the connection (teardown's one part that differs between the modes).
  // The page holds what both modes share: its stream and whether the call is ending (the patient
  // or the clinician's "end" closed it: never reconnect).
  function create(hooks) {
    let interim = null;   // the patient's caption being written
    let agentLine = null; // the agent's caption being written
    let statusTimer = null;

    const page = {
      ui, CAMERA_FPS, setState, showError, serverMessage, refusalLabel,
      stream: null,
      ending: false,
      onRtvi, resetCaptions, openMicrophone, onConnected, teardown, stop, toggleMute, askForClinician,
    };

    function resetCaptions() { interim = null; agentLine = null; }

    function onPatientText(text, final) {
      if (!text) return;
      if (!interim) interim = addCaption("patient", text, "patient interim");
      interim.querySelector(".text").textContent = text;
      if (final) { interim.className = "patient"; interim = null; agentLine = null; }
    }

    function onAgentText(text) {
      if (!text) return;
      if (!agentLine) agentLine = addCaption("agent", text, "agent");
      else agentLine.querySelector(".text").textContent += " " + text;
    }

    function onRtvi(raw) {
      // The agent's RTVI messages: a data channel's text, or a LiveKit data packet's bytes.
      let msg;
      try { msg = JSON.parse(typeof raw === "string" ? raw : new TextDecoder().decode(raw)); } catch { return; }
      if (!msg || msg.label !== "rtvi-ai") return;
      const data = msg.data || {};
      switch (msg.type) {
        case "user-transcription": onPatientText(data.text, data.final); break;
        case "bot-output": if (data.spoken !== false) onAgentText(data.text); break;
        case "bot-stopped-speaking": agentLine = null; break;
        case "server-message": onServerMessage(data); break;
      }
    }

    async function setCameraRate(fps) {
      const sender = hooks.cameraSender();
      if (!sender) return;
      const parameters = sender.getParameters();
      if (!parameters.encodings || !parameters.encodings.length) return;
      parameters.encodings.forEach((encoding) => { encoding.maxFramerate = fps; });
      try { await sender.setParameters(parameters); } catch { /* the browser keeps its last rate */ }
    }

    function onServerMessage(data) {
      if (!data) return;
      if (data.type === "escalation") {
        ui.escalation.textContent = data.message;
        ui.escalation.hidden = false;
        ui.ask.disabled = true;
        showClinicianStatus("A clinician has been asked to join. Please stay on this page.");
        watchRoomStatus();
      } else if (data.type === "clinician" && data.status === "joined") {
        showClinicianStatus(`${data.name} has joined.`);
        ui.clinicianCaption.textContent = data.name;
        ui.clinicianFigure.hidden = false;
        setCameraRate(CAMERA_FPS.clinician);
      } else if (data.type === "clinician" && data.status === "left") {
        ui.clinicianFigure.hidden = true;
        setCameraRate(CAMERA_FPS.agent);
        if (data.outcome === "ended") {
          showClinicianStatus("The clinician has ended the session.");
          page.ending = true;
          setState("closed", "Ended");
          setTimeout(teardown, 8000); // let the goodbye play
        } else {
          showClinicianStatus("The clinician has handed you back to the assistant.");
          ui.escalation.hidden = true;
          ui.ask.disabled = false;
        }
      }
    }

    function roomFetch(action, options) {
      const session = hooks.session();
      return fetch(`/api/room/${encodeURIComponent(session.id)}/${action}`,
        { ...options, headers: { "X-Room-Token": session.token } });
    }

    function watchRoomStatus() {
      // Until someone joins, say whether a clinician has picked up the request.
      if (statusTimer || !hooks.session()) return;
      statusTimer = setInterval(async () => {
        try {
          const res = await roomFetch("status");
          if (!res.ok) return;
          const status = await res.json();
          if (status.status === "claimed" && status.clinician) {
            showClinicianStatus(`${status.clinician} is on the way.`);
          } else if (status.status !== "waiting") {
            clearInterval(statusTimer); statusTimer = null;
          }
        } catch { /* the page keeps the last status */ }
      }, 3000);
    }

    async function askForClinician() {
      if (!hooks.session()) return;
      ui.ask.disabled = true;
      const res = await roomFetch("clinician", { method: "POST" });
      if (!res.ok) {
        ui.ask.disabled = false;
        showError(await serverMessage(res) || "Your request could not be sent. Please try again.");
      }
    }

    async function openMicrophone() {
      // The first half of "Start talking" in both modes: true once the microphone (and the camera,
      // when there is one) is open and previewed; false, with the reason shown, otherwise.
      showError("");
      ui.start.disabled = true;
      page.ending = false;
      setState("connecting", "Asking for the microphone…");
      try {
        page.stream = await getMedia();
      } catch (err) {
        ui.start.disabled = false;
        setState("failed", "Microphone blocked");
        showError(err.name === "NotAllowedError"
          ? "The microphone was denied. Allow microphone (and camera) access for this page in your browser's site settings, then press Start talking again."
          : `The microphone could not be opened (${err.name}). Check that one is connected and not used by another app.`);
        return false;
      }
      ui.preview.srcObject = page.stream;
      setState("connecting", "Connecting…");
      return true;
    }

    function onConnected(label) {
      setState("connected", label);
      ui.mute.disabled = false; ui.stop.disabled = false;
      ui.ask.disabled = !hooks.session() || !ui.escalation.hidden;
    }

    function teardown() {
      if (statusTimer) { clearInterval(statusTimer); statusTimer = null; }
      ui.clinicianFigure.hidden = true;
      ui.ask.disabled = true;
      hooks.close();
      if (page.stream) { page.stream.getTracks().forEach((t) => t.stop()); page.stream = null; }
      ui.start.disabled = false; ui.mute.disabled = true; ui.stop.disabled = true;
    }

    function stop() {
      page.ending = true;
      teardown();
      setState("closed", "Ended");
      showError("");
    }

    function toggleMute() {
      const track = page.stream && page.stream.getAudioTracks()[0];
      if (!track) return;
      track.enabled = !track.enabled;
      ui.mute.setAttribute("aria-pressed", String(!track.enabled));
      ui.mute.textContent = track.enabled ? "Mute microphone" : "Unmute microphone";
    }

    return page;
  }

  return { create };
})();
