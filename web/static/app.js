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
let emergencyNumber = ""; // from the offer's answer: the page needs it most when the server is gone
let ending = false;   // the patient (or the clinician's "end") closed the call: never reconnect
let reconnecting = false;
let call = 0;         // which call this is: a reconnect loop of an earlier call stops when it changes
let reconnects = 0;   // connections lost so far in this session (each one retried RECONNECT_DELAYS_S)
let lostTimer = null; // "disconnected" for DISCONNECTED_GRACE_MS before it counts as lost

// A dropped connection (a replica that died, a network that blinked) is offered again with the
// session's id and room token: any replica resumes the interview where it stood. Bounded: five
// tries over about half a minute per drop, and few drops per session (a server that ends a session
// on purpose, e.g. after a long silence, must not be resumed for ever).
const RECONNECT_DELAYS_S = [1, 2, 4, 8, 15];
const MAX_RECONNECTS = 3;
const DISCONNECTED_GRACE_MS = 3000;
const FIRST_CONNECT_WITHIN_MS = 15000; // a first connection not up by then is reported as failed
const CONNECT_WITHIN_MS = 10000; // one try: the answer, then ICE and DTLS up

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

function emergencyAdvice() {
  return `If this is an emergency, call ${emergencyNumber || "your local emergency number"}.`;
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
  ending = false; reconnects = 0; room = null; call += 1; reconnecting = false;
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
  const result = await connect(ice, null);
  if (result.ok) {
    await firstConnection(pc, call);
    return;
  }
  setState("failed", result.label);
  showError(result.message);
  teardown();
}

async function firstConnection(peer, thisCall) {
  // A first connection that never comes up (its relay refused, a network that blocks it) would
  // say "Connecting…" for ever: say it failed, with the emergency number. One that fails after
  // connecting is a drop, and reconnects (connectionLost).
  if (await connected(peer, FIRST_CONNECT_WITHIN_MS)) return;
  const stuck = ["new", "checking", "connecting"].includes(peer.connectionState);
  if (!stuck || call !== thisCall || pc !== peer || reconnecting) return;
  setState("failed", "Could not connect");
  showError(`The connection to the assistant could not be set up: your network may be blocking it. Please try again, or try another network. ${emergencyAdvice()}`);
  teardown();
}

function openPeer(ice) {
  // A fresh peer connection carrying the patient's microphone and camera, captions on its channel.
  const peer = new RTCPeerConnection(ice);
  const dc = peer.createDataChannel("messages", { ordered: true });
  dc.addEventListener("message", onMessage);
  dc.addEventListener("open", () => dc.send(JSON.stringify(
    { label: "rtvi-ai", type: "client-ready", id: String(Date.now()), data: { version: "1.0.0", about: { library: "patient-page" } } })));
  dc.addEventListener("close", () => { if (peer === pc && peer.connectionState !== "closed") connectionLost(); });

  const audioTrack = stream.getAudioTracks()[0];
  const videoTrack = stream.getVideoTracks()[0];
  peer.addTransceiver(audioTrack, { direction: "sendrecv" });
  if (videoTrack) {
    camera = peer.addTransceiver(videoTrack,
      { direction: "sendrecv", sendEncodings: [{ maxFramerate: CAMERA_FPS.agent }] }).sender;
  } else peer.addTransceiver("video", { direction: "sendrecv" });
  peer.addTransceiver("video", { direction: "sendrecv" }); // screen share slot the server expects

  let clinicianVideo = false; // this connection's first video track (the second is the screen slot)
  peer.addEventListener("track", (e) => {
    if (e.track.kind === "audio") ui.audio.srcObject = new MediaStream([e.track]);
    else if (!clinicianVideo) { // shown once a clinician joins
      clinicianVideo = true;
      ui.clinicianVideo.srcObject = new MediaStream([e.track]);
    }
  });
  peer.addEventListener("connectionstatechange", () => {
    if (peer !== pc) return; // an earlier connection, already given up
    const s = peer.connectionState;
    if (s === "connected") {
      if (lostTimer) { clearTimeout(lostTimer); lostTimer = null; }
      if (!reconnecting) onConnected("Connected: speak whenever you are ready");
    } else if (s === "failed") {
      connectionLost();
    } else if (s === "disconnected" && !lostTimer) {
      // Often a blink that ICE recovers from by itself; lost if it lasts.
      lostTimer = setTimeout(() => {
        lostTimer = null;
        if (peer === pc && peer.connectionState !== "connected") connectionLost();
      }, DISCONNECTED_GRACE_MS);
    }
  });
  return peer;
}

function onConnected(label) {
  setState("connected", label);
  ui.mute.disabled = false; ui.stop.disabled = false; ui.ask.disabled = !room || !ui.escalation.hidden;
}

function connected(peer, withinMs) {
  // Resolves true once ``peer`` is connected, false if it fails, closes or takes too long.
  return new Promise((resolve) => {
    const done = (value) => { clearTimeout(timer); peer.removeEventListener("connectionstatechange", check); resolve(value); };
    const check = () => {
      const s = peer.connectionState;
      if (s === "connected") done(true);
      else if (s === "failed" || s === "closed" || pc !== peer) done(false);
    };
    const timer = setTimeout(() => done(false), withinMs);
    peer.addEventListener("connectionstatechange", check);
    check();
  });
}

async function connect(ice, resumeRoom) {
  // One offer: a new session, or (``resumeRoom``) the session this page was in, on any replica.
  // -> {ok} or {ok: false, label, message, final}: final when trying again cannot help.
  const thisCall = call;
  const peer = openPeer(ice);
  pc = peer;
  // The patient ended the call (or began a new one) while this offer was under way: drop it.
  const abandoned = () => call !== thisCall || pc !== peer;
  await peer.setLocalDescription(await peer.createOffer());
  await waitForIce(peer);
  let res;
  try {
    const headers = { "Content-Type": "application/json" };
    const body = { sdp: peer.localDescription.sdp, type: peer.localDescription.type };
    if (resumeRoom) { body.resume = resumeRoom.id; headers["X-Room-Token"] = resumeRoom.token; }
    res = await fetch("/api/offer", { method: "POST", headers, body: JSON.stringify(body) });
    if (!res.ok) {
      const refusal = await serverMessage(res);
      if (refusal) { // all lines busy (with the emergency number), or too many attempts
        return { ok: false, label: res.status === 503 ? "All lines are busy" : "Please wait", message: refusal };
      }
      return { ok: false, label: "Could not connect", final: res.status === 403,
        message: `The assistant could not be reached (server answered ${res.status}). Please try again in a moment.` };
    }
    const answer = await res.json();
    if (abandoned()) { peer.close(); return { ok: false, label: "Ended", final: true }; }
    room = answer.session_id ? { id: answer.session_id, token: answer.room_token } : null;
    if (typeof answer.emergency_number === "string") emergencyNumber = answer.emergency_number;
    await peer.setRemoteDescription({ sdp: answer.sdp, type: answer.type });
  } catch (err) {
    return { ok: false, label: "Could not connect",
      message: `The assistant could not be reached (${err.message}). Please try again in a moment.` };
  }
  if (!resumeRoom) return { ok: true };
  return (await connected(peer, CONNECT_WITHIN_MS)) ? { ok: true } : { ok: false, label: "Could not connect" };
}

function closePeer() {
  if (lostTimer) { clearTimeout(lostTimer); lostTimer = null; }
  const old = pc;
  pc = null; camera = null;
  if (old) old.close();
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function connectionLost() {
  // The connection dropped without anyone ending the call: offer again, resuming this session.
  if (reconnecting || ending || !pc) return;
  closePeer();
  ui.mute.disabled = true; ui.ask.disabled = true; ui.clinicianFigure.hidden = true;
  if (!room || !stream || reconnects >= MAX_RECONNECTS) { couldNotReconnect(); return; }
  reconnects += 1;
  reconnecting = true;
  const thisCall = call;
  const over = () => ending || !stream || call !== thisCall; // ended (or a new call) meanwhile
  setState("reconnecting", "Reconnecting…");
  showError(`Connection lost — reconnecting… ${emergencyAdvice()}`);
  for (const delay of RECONNECT_DELAYS_S) {
    await sleep(delay * 1000);
    if (over()) break;
    let ice;
    try { ice = await iceConfig(); } catch { continue; } // no replica answered yet
    if (over()) break;
    const result = await connect(ice, room);
    if (over()) break;
    if (result.ok) {
      reconnecting = false;
      interim = null; agentLine = null;
      showError("");
      onConnected("Reconnected");
      return;
    }
    closePeer();
    if (result.final) break; // the server refused this session: another try cannot help
  }
  if (call !== thisCall) return; // a new call is under way: it is not this loop's
  reconnecting = false;
  if (!ending) couldNotReconnect();
}

function couldNotReconnect() {
  setState("failed", "Could not reconnect");
  showError(`The connection to the assistant was lost and could not be restored. ${emergencyAdvice()} Otherwise press Start talking to begin again.`);
  teardown();
  room = null; reconnects = 0;
}

function teardown() {
  if (statusTimer) { clearInterval(statusTimer); statusTimer = null; }
  ui.clinicianFigure.hidden = true;
  ui.ask.disabled = true;
  closePeer();
  if (stream) { stream.getTracks().forEach((t) => t.stop()); stream = null; }
  ui.start.disabled = false; ui.mute.disabled = true; ui.stop.disabled = true;
}

ui.start.addEventListener("click", start);
ui.ask.addEventListener("click", askForClinician);
ui.stop.addEventListener("click", () => { ending = true; teardown(); setState("closed", "Ended"); showError(""); });
ui.mute.addEventListener("click", () => {
  const track = stream && stream.getAudioTracks()[0];
  if (!track) return;
  track.enabled = !track.enabled;
  ui.mute.setAttribute("aria-pressed", String(!track.enabled));
  ui.mute.textContent = track.enabled ? "Mute microphone" : "Unmute microphone";
});
