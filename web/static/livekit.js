// The patient page when this server runs LiveKit rooms (LIVEKIT__ENABLED, docs/rooms.md).
//
// app.js speaks WebRTC to this server. When the server says its sessions are LiveKit's
// (GET /api/livekit answers; 404 otherwise), this file takes the page's buttons before app.js
// sees them: "Start talking" asks POST /api/livekit/session for a room and the patient's token,
// joins that room with LiveKit's SDK (vendor/livekit-client.umd.js), publishes the microphone and
// camera, plays the agent's voice and shows its captions, which the agent sends as RTVI data
// messages in the room. Without LiveKit this file does nothing and app.js runs as before.
"use strict";

(() => {
  const LK = window.LivekitClient;
  const $ = (id) => document.getElementById(id);
  const ui = {
    start: $("start"), mute: $("mute"), stop: $("stop"), state: $("state"), error: $("error"),
    escalation: $("escalation"), preview: $("preview"), audio: $("agent-audio"), captions: $("captions"),
    ask: $("ask-clinician"), clinicianStatus: $("clinician-status"), clinicianFigure: $("clinician-figure"),
    clinicianVideo: $("clinician-video"), clinicianCaption: $("clinician-caption"),
  };
  const processing = new URLSearchParams(location.search).get("processing") !== "off";
  // As app.js: the camera at the agent's sampling rate, at the full rate once a clinician joins.
  const CAMERA_FPS = { agent: 2, clinician: 30 };

  let livekit = null;   // null: not known yet; then true or false (the server's mode)
  let room = null;      // the LiveKit Room
  let session = null;   // {id, token}: this patient's session and its room token (X-Room-Token)
  let stream = null;
  let camera = null;    // the published camera track (LocalVideoTrack)
  let interim = null, agentLine = null, statusTimer = null, ending = false;
  let joined = false;   // in the room (a failed connect is reported by start, not as a lost connection)

  const mode = fetch("/api/livekit", { cache: "no-store" })
    .then((res) => res.ok ? res.json() : {})
    .then((body) => { livekit = Boolean(body.livekit) && Boolean(LK); return livekit; })
    .catch(() => { livekit = false; return false; });

  function setState(state, label) { ui.state.dataset.state = state; ui.state.textContent = label; }
  function showError(message) { ui.error.textContent = message; ui.error.hidden = !message; }
  function showClinicianStatus(text) { ui.clinicianStatus.textContent = text; ui.clinicianStatus.hidden = !text; }

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

  async function setCameraRate(fps) {
    const sender = camera && camera.sender;
    if (!sender) return;
    const parameters = sender.getParameters();
    if (!parameters.encodings || !parameters.encodings.length) return;
    parameters.encodings.forEach((encoding) => { encoding.maxFramerate = fps; });
    try { await sender.setParameters(parameters); } catch { /* the browser keeps its last rate */ }
  }

  // The agent's RTVI messages, as pipecat's LiveKit transport publishes them (JSON data packets).
  function onData(payload) {
    let msg;
    try { msg = JSON.parse(new TextDecoder().decode(payload)); } catch { return; }
    if (!msg || msg.label !== "rtvi-ai") return;
    const data = msg.data || {};
    switch (msg.type) {
      case "user-transcription": onPatientText(data.text, data.final); break;
      case "bot-output": if (data.spoken !== false) onAgentText(data.text); break;
      case "bot-stopped-speaking": agentLine = null; break;
      case "server-message": onServerMessage(data); break;
    }
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
        ending = true;
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
    return fetch(`/api/room/${encodeURIComponent(session.id)}/${action}`,
      { ...options, headers: { "X-Room-Token": session.token } });
  }

  function watchRoomStatus() {
    if (statusTimer || !session) return;
    statusTimer = setInterval(async () => {
      try {
        const res = await roomFetch("status");
        if (!res.ok) return;
        const status = await res.json();
        if (status.status === "claimed" && status.clinician) showClinicianStatus(`${status.clinician} is on the way.`);
        else if (status.status !== "waiting") { clearInterval(statusTimer); statusTimer = null; }
      } catch { /* the page keeps the last status */ }
    }, 3000);
  }

  async function serverMessage(res) {
    if (res.status !== 503 && res.status !== 429) return "";
    try { const body = await res.json(); return typeof body.error === "string" ? body.error : ""; } catch { return ""; }
  }

  async function getMedia() {
    const audio = processing ? true : { echoCancellation: false, noiseSuppression: false, autoGainControl: false };
    try {
      return await navigator.mediaDevices.getUserMedia({ audio, video: { width: 640, height: 480 } });
    } catch (err) {
      if (err.name === "NotFoundError" || err.name === "OverconstrainedError") {
        return await navigator.mediaDevices.getUserMedia({ audio }); // no camera: the agent can still listen
      }
      throw err;
    }
  }

  function openRoom() {
    const r = new LK.Room({ adaptiveStream: false, dynacast: false });
    r.on(LK.RoomEvent.TrackSubscribed, (track, _publication, participant) => {
      const fromClinician = String(participant.identity || "").startsWith("clinician-");
      if (track.kind === "audio") {
        // The agent's voice and a clinician's both play; one element per track.
        if (!fromClinician) track.attach(ui.audio); else document.body.append(track.attach());
      } else if (fromClinician) track.attach(ui.clinicianVideo);
    });
    r.on(LK.RoomEvent.TrackUnsubscribed, (track) => track.detach());
    r.on(LK.RoomEvent.DataReceived, (payload) => onData(payload));
    r.on(LK.RoomEvent.Reconnecting, () => setState("reconnecting", "Reconnecting…"));
    r.on(LK.RoomEvent.Reconnected, () => setState("connected", "Reconnected"));
    r.on(LK.RoomEvent.Disconnected, () => {
      if (r !== room || ending || !joined) return;
      setState("failed", "Connection lost");
      showError("The connection to the assistant was lost. If this is an emergency, call your local emergency number. Otherwise press Start talking to begin again.");
      teardown();
    });
    return r;
  }

  async function start() {
    showError("");
    ui.start.disabled = true;
    ending = false; session = null;
    setState("connecting", "Asking for the microphone…");
    try {
      stream = await getMedia();
    } catch (err) {
      ui.start.disabled = false;
      setState("failed", "Microphone blocked");
      showError(err.name === "NotAllowedError"
        ? "The microphone was denied. Allow microphone (and camera) access for this page in your browser's site settings, then press Start talking again."
        : `The microphone could not be opened (${err.name}). Check that one is connected and not used by another app.`);
      return;
    }
    ui.preview.srcObject = stream;
    setState("connecting", "Connecting…");
    let access;
    try {
      const res = await fetch("/api/livekit/session", { method: "POST", cache: "no-store" });
      if (!res.ok) {
        const refusal = await serverMessage(res);
        setState("failed", refusal ? (res.status === 503 ? "All lines are busy" : "Please wait") : "Could not connect");
        showError(refusal || `The assistant could not be reached (server answered ${res.status}). Please try again in a moment.`);
        teardown();
        return;
      }
      access = await res.json();
      session = { id: access.session_id, token: access.room_token };
      room = openRoom();
      await room.connect(access.url, access.token, { autoSubscribe: true });
      const audioTrack = stream.getAudioTracks()[0];
      const videoTrack = stream.getVideoTracks()[0];
      await room.localParticipant.publishTrack(audioTrack, { source: LK.Track.Source.Microphone });
      if (videoTrack) {
        const publication = await room.localParticipant.publishTrack(videoTrack, {
          source: LK.Track.Source.Camera, simulcast: false,
          videoEncoding: { maxBitrate: 1500000, maxFramerate: CAMERA_FPS.agent },
        });
        camera = publication.track;
      }
    } catch (err) {
      setState("failed", "Could not connect");
      showError(`The assistant could not be reached (${err.message}). Please try again in a moment.`);
      teardown();
      return;
    }
    joined = true;
    setState("connected", "Connected: speak whenever you are ready");
    ui.mute.disabled = false; ui.stop.disabled = false; ui.ask.disabled = !ui.escalation.hidden;
  }

  function teardown() {
    if (statusTimer) { clearInterval(statusTimer); statusTimer = null; }
    ui.clinicianFigure.hidden = true;
    ui.ask.disabled = true;
    const old = room;
    room = null; camera = null; joined = false;
    if (old) old.disconnect();
    if (stream) { stream.getTracks().forEach((t) => t.stop()); stream = null; }
    ui.start.disabled = false; ui.mute.disabled = true; ui.stop.disabled = true;
  }

  async function askForClinician() {
    if (!session) return;
    ui.ask.disabled = true;
    const res = await roomFetch("clinician", { method: "POST" });
    if (!res.ok) {
      ui.ask.disabled = false;
      showError(await serverMessage(res) || "Your request could not be sent. Please try again.");
    }
  }

  function toggleMute() {
    const track = stream && stream.getAudioTracks()[0];
    if (!track) return;
    track.enabled = !track.enabled;
    ui.mute.setAttribute("aria-pressed", String(!track.enabled));
    ui.mute.textContent = track.enabled ? "Mute microphone" : "Unmute microphone";
  }

  const actions = {
    start, ask: askForClinician, mute: toggleMute,
    stop: () => { ending = true; teardown(); setState("closed", "Ended"); showError(""); },
  };
  let passThrough = false; // a click handed back to app.js (the server is not on LiveKit)

  // Capturing on the document runs before app.js's listeners on the buttons themselves.
  document.addEventListener("click", async (event) => {
    const target = event.target instanceof Element ? event.target.closest("button") : null;
    const action = target && { start: "start", "ask-clinician": "ask", mute: "mute", stop: "stop" }[target.id];
    if (!action || passThrough || livekit === false) return;
    event.stopPropagation();
    if (livekit === null && !(await mode)) { // not known at the click: ask, then hand it on
      passThrough = true;
      try { target.click(); } finally { passThrough = false; }
      return;
    }
    await actions[action]();
  }, true);
})();
