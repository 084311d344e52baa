// The patient page: microphone + camera to the agent over WebRTC, captions from its data channel.
"use strict";

let pc = null;
let room = null;      // {id, token}: this patient's own room, for its status and the clinician button
                      // (the token goes in the X-Room-Token header, never the URL; it ends with the session)
let camera = null;    // the RTCRtpSender of the patient's camera, when there is one
let emergencyNumber = ""; // from the offer's answer: the page needs it most when the server is gone
let reconnecting = false;
let call = 0;         // which call this is: a reconnect loop of an earlier call stops when it changes
let reconnects = 0;   // connections lost so far in this session (each one retried RECONNECT_DELAYS_S)
let lostTimer = null; // "disconnected" for DISCONNECTED_GRACE_MS before it counts as lost

// Captions, server messages, the clinician button, mute and teardown: patient_page.js, shared with
// livekit.js. This file keeps the peer connection: the offer, its ICE servers and reconnecting.
const page = PatientPage.create({ session: () => room, cameraSender: () => camera, close: closePeer });
const { ui, CAMERA_FPS, setState, showError, serverMessage } = page;
const teardown = page.teardown;

// A dropped connection (a replica that died, a network that blinked) is offered again with the
// session's id and room token: any replica resumes the interview where it stood. Bounded: five
// tries over about half a minute per drop, and few drops per session (a server that ends a session
// on purpose, e.g. after a long silence, must not be resumed for ever).
const RECONNECT_DELAYS_S = [1, 2, 4, 8, 15];
const MAX_RECONNECTS = 3;
const DISCONNECTED_GRACE_MS = 3000;
const FIRST_CONNECT_WITHIN_MS = 15000; // a first connection not up by then is reported as failed
const CONNECT_WITHIN_MS = 10000; // one try: the answer, then ICE and DTLS up

function emergencyAdvice() {
  return `If this is an emergency, call ${emergencyNumber || "your local emergency number"}.`;
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
  reconnects = 0; room = null; call += 1; reconnecting = false;
  if (!(await page.openMicrophone())) return;

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
  dc.addEventListener("message", (event) => page.onRtvi(event.data));
  dc.addEventListener("open", () => dc.send(JSON.stringify(
    { label: "rtvi-ai", type: "client-ready", id: String(Date.now()), data: { version: "1.0.0", about: { library: "patient-page" } } })));
  dc.addEventListener("close", () => { if (peer === pc && peer.connectionState !== "closed") connectionLost(); });

  const audioTrack = page.stream.getAudioTracks()[0];
  const videoTrack = page.stream.getVideoTracks()[0];
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
      if (!reconnecting) page.onConnected("Connected: speak whenever you are ready");
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
        return { ok: false, label: page.refusalLabel(res.status), message: refusal };
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
  if (reconnecting || page.ending || !pc) return;
  closePeer();
  ui.mute.disabled = true; ui.ask.disabled = true; ui.clinicianFigure.hidden = true;
  if (!room || !page.stream || reconnects >= MAX_RECONNECTS) { couldNotReconnect(); return; }
  reconnects += 1;
  reconnecting = true;
  const thisCall = call;
  const over = () => page.ending || !page.stream || call !== thisCall; // ended (or a new call) meanwhile
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
      page.resetCaptions();
      showError("");
      page.onConnected("Reconnected");
      return;
    }
    closePeer();
    if (result.final) break; // the server refused this session: another try cannot help
  }
  if (call !== thisCall) return; // a new call is under way: it is not this loop's
  reconnecting = false;
  if (!page.ending) couldNotReconnect();
}

function couldNotReconnect() {
  setState("failed", "Could not reconnect");
  showError(`The connection to the assistant was lost and could not be restored. ${emergencyAdvice()} Otherwise press Start talking to begin again.`);
  teardown();
  room = null; reconnects = 0;
}

ui.start.addEventListener("click", start);
ui.ask.addEventListener("click", page.askForClinician);
ui.stop.addEventListener("click", page.stop);
ui.mute.addEventListener("click", page.toggleMute);
