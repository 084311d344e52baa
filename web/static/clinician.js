// The clinician console: sign in, watch the escalation queue live, claim one, join the patient's call.
"use strict";

const $ = (id) => document.getElementById(id);
const ui = {
  who: $("who"), whoName: $("who-name"), logout: $("logout"), setup: $("setup"), error: $("error"),
  login: $("login-form"), username: $("username"), password: $("password"),
  call: $("call"), callState: $("call-state"), patientVideo: $("patient-video"), selfVideo: $("self-video"),
  patientAudio: $("patient-audio"), queueSection: $("queue-section"), queue: $("queue"), empty: $("empty"),
  streamState: $("stream-state"),
};
const params = new URLSearchParams(location.search);
// Tests feed a recorded voice as the microphone: browser voice processing would distort it.
const processing = params.get("processing") !== "off";

const LEVELS = ["emergency", "urgent", "soon", "routine", "self_care"];
const ACTIVE = ["waiting", "claimed", "joined", "handed_back"];
const OUTCOMES = { completed: "Completed", referred: "Referred", emergency_services: "Sent to emergency services", patient_left: "Patient left" };

let me = null;            // {username, display_name, csrf}
let events = null;        // the EventSource
const items = new Map();  // id -> {data, receivedAt}
const openTranscripts = new Set();
let call = null;          // {id, pc, stream}

// --- small helpers ------------------------------------------------------------------------

function showError(message) {
  ui.error.textContent = message || "";
  ui.error.hidden = !message;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

function button(className, label, onClick, extra) {
  const b = el("button", className, label);
  b.type = "button";
  b.addEventListener("click", async () => {
    b.disabled = true;
    try { await onClick(); } catch (err) { showError(err.message); } finally { b.disabled = false; }
  });
  if (extra) b.classList.add(extra);
  return b;
}

function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  if (h) return `${h} h ${m} min`;
  if (m) return `${m} min ${String(r).padStart(2, "0")} s`;
  return `${r} s`;
}

function levelLabel(level) {
  return (level || "unknown").replace("_", " ");
}

async function post(path, body) {
  const res = await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": me ? me.csrf : "" },
    body: JSON.stringify(body || {}),
  });
  const data = await res.json().catch(() => ({}));
  if (res.status === 401) { signedOut(data.setup); throw new Error("Your session has ended: please sign in again."); }
  if (!res.ok) throw new Error(data.error || `The server answered ${res.status}.`);
  return data;
}

// --- signing in and out -------------------------------------------------------------------

function signedOut(setup) {
  me = null;
  if (events) { events.close(); events = null; }
  items.clear();
  render();
  ui.who.hidden = true;
  ui.queueSection.hidden = true;
  ui.login.hidden = false;
  ui.setup.textContent = setup || "";
  ui.setup.hidden = !setup;
  ui.username.focus();
}

function signedIn(who) {
  me = who;
  ui.whoName.textContent = who.display_name;
  ui.who.hidden = false;
  ui.login.hidden = true;
  ui.setup.hidden = true;
  ui.queueSection.hidden = false;
  showError("");
  listen();
}

async function checkSession() {
  const res = await fetch("/clinician/api/me", { credentials: "same-origin" });
  const data = await res.json().catch(() => ({}));
  if (res.ok) signedIn(data); else signedOut(data.setup);
}

ui.login.addEventListener("submit", async (event) => {
  event.preventDefault();
  showError("");
  const res = await fetch("/clinician/login", {
    method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username: ui.username.value, password: ui.password.value }),
  });
  const data = await res.json().catch(() => ({}));
  ui.password.value = "";
  if (!res.ok) {
    showError(data.error || `Sign-in failed (${res.status}).`);
    if (data.setup) { ui.setup.textContent = data.setup; ui.setup.hidden = false; }
    return;
  }
  signedIn(data);
});

ui.logout.addEventListener("click", async () => {
  hangUp("Not in a call");
  try { await post("/clinician/logout"); } catch { /* signed out either way */ }
  signedOut();
});

// --- the live queue -----------------------------------------------------------------------

function listen() {
  if (events) events.close();
  events = new EventSource("/clinician/api/events");
  ui.streamState.dataset.state = "connecting";
  ui.streamState.textContent = "connecting…";
  events.addEventListener("open", () => { ui.streamState.dataset.state = "live"; ui.streamState.textContent = "live"; });
  events.addEventListener("snapshot", (e) => {
    const data = JSON.parse(e.data);
    items.clear();
    for (const item of data.escalations) items.set(item.id, { data: item, receivedAt: Date.now() });
    render();
  });
  events.addEventListener("change", (e) => {
    const data = JSON.parse(e.data);
    if (data.kind === "removed") items.delete(data.escalation.id); // ended a while ago: off every console
    else items.set(data.escalation.id, { data: data.escalation, receivedAt: Date.now() });
    render();
  });
  events.addEventListener("signed-out", () => {
    signedOut();
    showError("Your session has ended (signed out, or unused for a while): please sign in again.");
  });
  events.addEventListener("error", () => {
    ui.streamState.dataset.state = "lost";
    ui.streamState.textContent = "reconnecting…";
    // A closed stream is not retried by the browser (for example after a 401): check why.
    if (events && events.readyState === EventSource.CLOSED) setTimeout(checkSession, 2000);
  });
}

function rank(item) {
  const d = item.data;
  const level = LEVELS.indexOf(d.level);
  return [ACTIVE.includes(d.status) ? 0 : 1, level < 0 ? LEVELS.length : level, d.created_at];
}

function compare(a, b) {
  const ra = rank(a), rb = rank(b);
  for (let i = 0; i < ra.length; i += 1) {
    if (ra[i] < rb[i]) return -1;
    if (ra[i] > rb[i]) return 1;
  }
  return 0;
}

function render() {
  const sorted = [...items.values()].sort(compare);
  ui.queue.replaceChildren(...sorted.map(card));
  ui.empty.hidden = sorted.length > 0;
  const waiting = sorted.filter((i) => i.data.status === "waiting").length;
  document.title = waiting ? `(${waiting}) Clinician console` : "Clinician console — escalations";
  tick();
}

function tick() {
  for (const node of ui.queue.querySelectorAll(".escalation")) {
    const item = items.get(node.dataset.id);
    if (!item) continue;
    const since = item.data.waiting_s + (Date.now() - item.receivedAt) / 1000;
    const label = item.data.status === "ended" ? "raised" : "waiting";
    node.querySelector(".waiting").textContent = `${label} ${duration(since)}${item.data.status === "ended" ? " ago" : ""}`;
  }
}
setInterval(tick, 1000);

function statusLine(d) {
  const who = d.clinician_name || d.clinician;
  switch (d.status) {
    case "waiting": return "Waiting for a clinician";
    case "claimed": return `Claimed by ${who}`;
    case "joined": return `${who} is with the patient`;
    case "handed_back": return `Handed back to the assistant by ${who}`;
    case "ended": return `Ended by ${who}`;
    default: return d.status;
  }
}

function card(item) {
  const d = item.data;
  const mine = me && d.clinician === me.username;
  const li = el("li", "escalation");
  Object.assign(li.dataset, { id: d.id, level: d.level, status: d.status, mine: String(Boolean(mine)) });

  const head = el("div", "card-head");
  const level = el("span", "level", levelLabel(d.level));
  level.dataset.level = d.level;
  head.append(level, el("span", "waiting"), el("span", "status", statusLine(d)));
  if (!d.live && d.status !== "ended") head.append(el("span", "gone", "patient not connected"));
  li.append(head);

  const body = el("div", "card-body");
  const text = el("div", "card-text");
  if (d.reasons && d.reasons.length) {
    const reasons = el("ul", "reasons");
    for (const r of d.reasons) reasons.append(el("li", null, r));
    text.append(reasons);
  }
  text.append(el("p", "summary-text", d.summary || "No summary yet."));
  if (d.similar_cases && d.similar_cases.length) text.append(cases(d.similar_cases));
  text.append(transcript(d));
  body.append(text);
  if (d.best_frame_jpeg_b64) {
    const img = el("img", "frame");
    img.alt = "The best camera frame of the patient's skin";
    img.src = `data:image/jpeg;base64,${d.best_frame_jpeg_b64}`;
    body.append(img);
  }
  li.append(body, actions(d, mine));
  return li;
}

function cases(list) {
  const wrap = el("div", "similar");
  wrap.append(el("strong", null, "Similar SCIN cases"));
  const ul = el("ul", "cases");
  for (const c of list) {
    const li = el("li", "case");
    const labels = Object.entries(c.labels || {}).sort((a, b) => b[1] - a[1]);
    labels.forEach(([label, weight], i) => {
      if (i) li.append(", ");
      li.append(el("span", "label", label), " ", el("span", "weight", `(${Number(weight).toFixed(2)})`));
    });
    if (!labels.length) li.append(el("span", "label", "unlabelled case"));
    if (c.matched_on) li.append(el("span", "weight", ` · matched on ${c.matched_on}`));
    ul.append(li);
  }
  wrap.append(ul);
  return wrap;
}

function transcript(d) {
  const details = el("details", "transcript");
  details.open = openTranscripts.has(d.id);
  details.addEventListener("toggle", () => {
    if (details.open) openTranscripts.add(d.id); else openTranscripts.delete(d.id);
  });
  const turns = d.transcript || [];
  details.append(el("summary", null, `Transcript so far (${turns.length} turns)`));
  const ol = el("ol");
  for (const t of turns) {
    const li = el("li", t.role === "patient" ? "patient" : "agent");
    li.append(el("span", "who", t.role === "patient" ? "Patient:" : "Assistant:"), el("span", "text", t.text));
    ol.append(li);
  }
  details.append(ol);
  return details;
}

// The session's id in the query: behind HAProxy, the request reaches the replica that holds the
// patient's live session (configs/haproxy/haproxy.cfg); the server itself does not read it.
function onReplica(d) {
  return `?session=${encodeURIComponent(d.session_id)}`;
}

function actions(d, mine) {
  const box = el("div", "actions");
  const path = `/clinician/api/escalations/${encodeURIComponent(d.id)}`;
  const live = onReplica(d); // what reaches the patient's live session, on its replica
  const inCall = call && call.id === d.id;
  if (d.status === "waiting") {
    box.append(button("claim primary", "Claim", () => post(`${path}/claim`)));
  }
  if (!mine) return box;
  if (d.status === "claimed") {
    box.append(button("join primary", "Join the call", () => join(d)));
    box.append(button("release", "Release", () => post(`${path}/release`)));
  }
  if ((d.status === "joined" || d.status === "handed_back") && !inCall) {
    box.append(button("join primary", d.status === "joined" ? "Rejoin the call" : "Join again", () => join(d)));
  }
  if (d.status === "joined") {
    box.append(button("summary", "Ask the assistant for a summary", () => post(`${path}/summary${live}`)));
    box.append(button("hand-back", "Hand back to the assistant", async () => {
      await post(`${path}/hand-back${live}`);
      hangUp("Handed back to the assistant");
    }));
  }
  if (ACTIVE.includes(d.status) && d.status !== "waiting") {
    const outcome = el("select", "outcome");
    outcome.setAttribute("aria-label", "Outcome");
    for (const [value, label] of Object.entries(OUTCOMES)) {
      const option = el("option", null, label);
      option.value = value;
      outcome.append(option);
    }
    box.append(outcome, button("end danger", d.status === "joined" ? "End session" : "Close escalation", async () => {
      await post(`${path}/end${live}`, { outcome: outcome.value });
      if (call && call.id === d.id) hangUp("Session ended");
    }));
  }
  return box;
}

// --- the call -----------------------------------------------------------------------------

function setCallState(state, label) {
  ui.callState.dataset.state = state;
  ui.callState.textContent = label;
}

async function getMedia() {
  const audio = processing ? true : { echoCancellation: false, noiseSuppression: false, autoGainControl: false };
  try {
    return await navigator.mediaDevices.getUserMedia({ audio, video: { width: 640, height: 480 } });
  } catch (err) {
    if (err.name === "NotFoundError" || err.name === "OverconstrainedError") {
      return await navigator.mediaDevices.getUserMedia({ audio }); // no camera: voice only
    }
    throw err;
  }
}

function waitForIce(peer) {
  // The server has no trickle ICE: the offer goes once gathering is complete.
  if (peer.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const check = () => { if (peer.iceGatheringState === "complete") resolve(); };
    peer.addEventListener("icegatheringstatechange", check);
    setTimeout(resolve, 5000);
  });
}

async function iceConfig() {
  // The STUN/TURN servers for this call, with TURN credentials the server minted for it.
  const res = await fetch("/api/ice-servers", { cache: "no-store", credentials: "same-origin" });
  if (!res.ok) throw new Error(`The call could not be set up (server answered ${res.status}).`);
  const config = await res.json();
  return {
    iceServers: Array.isArray(config.iceServers) ? config.iceServers : [],
    iceTransportPolicy: config.iceTransportPolicy === "relay" ? "relay" : "all",
  };
}

async function join(d) {
  showError("");
  hangUp("Not in a call");
  ui.call.hidden = false;
  setCallState("connecting", "Asking for your microphone and camera…");
  let stream;
  try {
    stream = await getMedia();
  } catch (err) {
    setCallState("failed", "Microphone blocked");
    throw new Error(err.name === "NotAllowedError"
      ? "The microphone was denied. Allow microphone and camera access for this page, then press Join again."
      : `The microphone could not be opened (${err.name}).`);
  }
  ui.selfVideo.srcObject = stream;
  if (window.ClinicianLiveKit && await window.ClinicianLiveKit.enabled()) {
    await joinLiveKit(d, stream); // LiveKit rooms: the join answers with a token (clinician_livekit.js)
    return;
  }
  let ice;
  try {
    ice = await iceConfig();
  } catch (err) {
    stream.getTracks().forEach((t) => t.stop());
    ui.selfVideo.srcObject = null;
    setCallState("failed", "Could not connect");
    throw err;
  }
  const pc = new RTCPeerConnection(ice);
  call = { id: d.id, pc, stream };
  const audioTrack = stream.getAudioTracks()[0];
  const videoTrack = stream.getVideoTracks()[0];
  pc.addTransceiver(audioTrack || "audio", { direction: "sendrecv" });
  pc.addTransceiver(videoTrack || "video", { direction: "sendrecv" });
  pc.addEventListener("track", (e) => {
    const media = new MediaStream([e.track]);
    if (e.track.kind === "video") ui.patientVideo.srcObject = media;
    else ui.patientAudio.srcObject = media;
  });
  pc.addEventListener("connectionstatechange", () => {
    if (!call || call.pc !== pc) return;
    const s = pc.connectionState;
    if (s === "connected") setCallState("connected", "Connected with the patient");
    if (s === "disconnected" || s === "failed") {
      setCallState(s, "Connection lost");
      showError("The call with the patient dropped. Press Rejoin the call to reconnect.");
      hangUp("Connection lost", s);
    }
  });
  setCallState("connecting", "Connecting…");
  await pc.setLocalDescription(await pc.createOffer());
  await waitForIce(pc);
  try {
    const answer = await post(`/clinician/api/escalations/${encodeURIComponent(d.id)}/join${onReplica(d)}`,
      { sdp: pc.localDescription.sdp, type: pc.localDescription.type });
    await pc.setRemoteDescription(answer);
  } catch (err) {
    hangUp("Could not connect", "failed");
    throw err;
  }
  render();
}

async function joinLiveKit(d, stream) {
  call = { id: d.id, pc: null, stream };
  const mine = call;
  setCallState("connecting", "Connecting…");
  try {
    const access = await post(`/clinician/api/escalations/${encodeURIComponent(d.id)}/join${onReplica(d)}`);
    mine.pc = await window.ClinicianLiveKit.connect(access, stream, ui, {
      onState: (state, label) => { if (call === mine) setCallState(state, label); },
      onLost: () => {
        if (call !== mine) return;
        showError("The call with the patient dropped. Press Rejoin the call to reconnect.");
        hangUp("Connection lost", "disconnected");
      },
    });
    if (call !== mine) mine.pc.close(); // hung up while connecting
  } catch (err) {
    if (call === mine) hangUp("Could not connect", "failed");
    throw err;
  }
  render();
}

function hangUp(label, state) {
  if (call) {
    if (call.pc) call.pc.close();
    call.stream.getTracks().forEach((t) => t.stop());
    call = null;
    ui.patientVideo.srcObject = null;
    ui.patientAudio.srcObject = null;
    ui.selfVideo.srcObject = null;
    render();
  }
  setCallState(state || "idle", label);
}

// --- staying signed in while in use -------------------------------------------------------
// The server signs a console out after CLINICIAN__SESSION_IDLE_TIMEOUT_S (30 min) without use, so
// an unattended screen does not stay open. Use is the clinician at the screen (a key or a click)
// or a call in progress, told to the server at most once a minute; an open console alone is not.

const ACTIVITY_EVERY_MS = 60 * 1000;
let lastActivity = 0;

async function stillHere() {
  if (!me || Date.now() - lastActivity < ACTIVITY_EVERY_MS) return;
  lastActivity = Date.now();
  const res = await fetch("/clinician/api/me", { credentials: "same-origin" }).catch(() => null);
  if (res && res.status === 401) {
    signedOut();
    showError("You were signed out after a while without activity: please sign in again.");
  }
}

for (const type of ["pointerdown", "keydown"]) document.addEventListener(type, stillHere, { passive: true });
setInterval(() => { if (call) stillHere(); }, ACTIVITY_EVERY_MS);

checkSession().catch((err) => showError(`The console could not reach the server (${err.message}).`));
