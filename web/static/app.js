// The patient page: microphone + camera to the agent over WebRTC, captions from its data channel.
"use strict";

const $ = (id) => document.getElementById(id);
const ui = {
  start: $("start"), mute: $("mute"), stop: $("stop"), state: $("state"), error: $("error"),
  escalation: $("escalation"), preview: $("preview"), audio: $("agent-audio"), captions: $("captions"),
  ask: $("ask-clinician"), clinicianStatus: $("clinician-status"), clinicianFigure: $("clinician-figure"),
  clinicianVideo: $("clinician-video"), clinicianCaption: $("clinician-caption"),
};
const params = new URLSearchParams(location.search);
// Tests feed a recorded voice as the microphone: browser voice processing would distort it.
const processing = params.get("processing") !== "off";

let pc = null;
let stream = null;
let interim = null;   // the patient's caption being written
let agentLine = null; // the agent's caption being written
let room = null;      // {id, token}: this patient's own room, for its status and the clinician button
                      // (the token goes in the X-Room-Token header, never the URL; it ends with the session)
let statusTimer = null;
let camera = null;    // the RTCRtpSender of the patient's camera, when there is one

// The agent judges about one camera frame a second, so while only the agent looks the camera is
// sent at 2 frames a second (the server decodes no more); a clinician who joins sees it at the
// full rate. Full resolution either way: the agent judges sharpness and distance on the frame.
const CAMERA_FPS = { agent: 2, clinician: 30 };

async function setCameraRate(fps) {
  if (!camera) return;
  const parameters = camera.getParameters();
  if (!parameters.encodings || !parameters.encodings.length) return;
  parameters.encodings[0].maxFramerate = fps;
  try { await camera.setParameters(parameters); } catch { /* the browser keeps its last rate */ }
}

function setState(state, label) {
  ui.state.dataset.state = state;
  ui.state.textContent = label;
}

function showError(message) {
  ui.error.textContent = message;
  ui.error.hidden = !message;
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

function onMessage(event) {
  let msg;
  try { msg = JSON.parse(event.data); } catch { return; }
  if (msg.label !== "rtvi-ai") return;
  const data = msg.data || {};
  switch (msg.type) {
    case "user-transcription": onPatientText(data.text, data.final); break;
    case "bot-output": if (data.spoken !== false) onAgentText(data.text); break;
    case "bot-started-speaking": break;
    case "bot-stopped-speaking": agentLine = null; break;
    case "server-message": onServerMessage(data); break;
  }
}

function showClinicianStatus(text) {
  ui.clinicianStatus.textContent = text;
  ui.clinicianStatus.hidden = !text;
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
  return fetch(`/api/room/${encodeURIComponent(room.id)}/${action}`,
    { ...options, headers: { "X-Room-Token": room.token } });
}

function watchRoomStatus() {
  // Until someone joins, say whether a clinician has picked up the request.
  if (statusTimer || !room) return;
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

async function serverMessage(res) {
  // The server's own words for a refusal the patient should read (503 busy, 429 too many attempts).
  if (res.status !== 503 && res.status !== 429) return "";
  try { const body = await res.json(); return typeof body.error === "string" ? body.error : ""; }
  catch { return ""; }
}

async function askForClinician() {
  if (!room) return;
  ui.ask.disabled = true;
  const res = await roomFetch("clinician", { method: "POST" });
  if (!res.ok) {
    ui.ask.disabled = false;
    showError(await serverMessage(res) || "Your request could not be sent. Please try again.");
  }
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

function waitForIce(peer) {
  // aiortc has no trickle ICE: send the offer once gathering is complete.
  if (peer.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const check = () => { if (peer.iceGatheringState === "complete") resolve(); };
    peer.addEventListener("icegatheringstatechange", check);
    setTimeout(resolve, 3000);
  });
}

async function iceConfig() {
  // The STUN/TURN servers for this connection, with TURN credentials the server minted for it
  // ({iceServers: []} on a LAN), and "relay" when the clinic allows the relay only.
  const res = await fetch("/api/ice-servers", { cache: "no-store" });
  if (!res.ok) {
    const err = new Error(`server answered ${res.status}`);
    err.refusal = await serverMessage(res);
    throw err;
  }
  const config = await res.json();
  return {
    iceServers: Array.isArray(config.iceServers) ? config.iceServers : [],
    iceTransportPolicy: config.iceTransportPolicy === "relay" ? "relay" : "all",
  };
}

async function start() {
  showError("");
  ui.start.disabled = true;
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

  let ice;
  try {
    ice = await iceConfig();
  } catch (err) {
    setState("failed", err.refusal ? "Please wait" : "Could not connect");
    showError(err.refusal || `The assistant could not be reached (${err.message}). Please try again in a moment.`);
    teardown();
    return;
  }
  pc = new RTCPeerConnection(ice);
  const dc = pc.createDataChannel("messages", { ordered: true });
  dc.addEventListener("message", onMessage);
  dc.addEventListener("open", () => dc.send(JSON.stringify(
    { label: "rtvi-ai", type: "client-ready", id: String(Date.now()), data: { version: "1.0.0", about: { library: "patient-page" } } })));

  const audioTrack = stream.getAudioTracks()[0];
  const videoTrack = stream.getVideoTracks()[0];
  pc.addTransceiver(audioTrack, { direction: "sendrecv" });
  if (videoTrack) {
    camera = pc.addTransceiver(videoTrack,
      { direction: "sendrecv", sendEncodings: [{ maxFramerate: CAMERA_FPS.agent }] }).sender;
  } else pc.addTransceiver("video", { direction: "sendrecv" });
  pc.addTransceiver("video", { direction: "sendrecv" }); // screen share slot the server expects

  pc.addEventListener("track", (e) => {
    if (e.track.kind === "audio") ui.audio.srcObject = new MediaStream([e.track]);
    else if (!ui.clinicianVideo.srcObject) ui.clinicianVideo.srcObject = new MediaStream([e.track]); // shown once a clinician joins
  });
  pc.addEventListener("connectionstatechange", () => {
    const s = pc ? pc.connectionState : "closed";
    if (s === "connected") {
      setState("connected", "Connected: speak whenever you are ready");
      ui.mute.disabled = false; ui.stop.disabled = false; ui.ask.disabled = !room;
    }
    if (s === "disconnected" || s === "failed") {
      setState(s, "Connection lost");
      showError("The connection to the assistant dropped. Check your internet connection and press Start talking to reconnect.");
      teardown();
    }
  });

  await pc.setLocalDescription(await pc.createOffer());
  await waitForIce(pc);
  try {
    const res = await fetch("/api/offer", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sdp: pc.localDescription.sdp, type: pc.localDescription.type }),
    });
    if (!res.ok) {
      const refusal = await serverMessage(res);
      if (refusal) { // all lines busy (with the emergency number), or too many attempts
        setState("failed", res.status === 503 ? "All lines are busy" : "Please wait");
        showError(refusal);
        teardown();
        return;
      }
      throw new Error(`server answered ${res.status}`);
    }
    const answer = await res.json();
    room = answer.session_id ? { id: answer.session_id, token: answer.room_token } : null;
    await pc.setRemoteDescription({ sdp: answer.sdp, type: answer.type });
  } catch (err) {
    setState("failed", "Could not connect");
    showError(`The assistant could not be reached (${err.message}). Please try again in a moment.`);
    teardown();
  }
}

function teardown() {
  if (statusTimer) { clearInterval(statusTimer); statusTimer = null; }
  ui.clinicianFigure.hidden = true;
  ui.ask.disabled = true;
  if (pc) { pc.close(); pc = null; }
  camera = null;
  if (stream) { stream.getTracks().forEach((t) => t.stop()); stream = null; }
  ui.start.disabled = false; ui.mute.disabled = true; ui.stop.disabled = true;
}

ui.start.addEventListener("click", start);
ui.ask.addEventListener("click", askForClinician);
ui.stop.addEventListener("click", () => { teardown(); setState("closed", "Ended"); });
ui.mute.addEventListener("click", () => {
  const track = stream && stream.getAudioTracks()[0];
  if (!track) return;
  track.enabled = !track.enabled;
  ui.mute.setAttribute("aria-pressed", String(!track.enabled));
  ui.mute.textContent = track.enabled ? "Mute microphone" : "Unmute microphone";
});
