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
  let livekit = null;   // null: not known yet; then true or false (the server's mode)
  let room = null;      // the LiveKit Room
  let session = null;   // {id, token}: this patient's session and its room token (X-Room-Token)
  let camera = null;    // the published camera track (LocalVideoTrack)
  let joined = false;   // in the room (a failed connect is reported by start, not as a lost connection)

  // Captions, server messages, the clinician button, mute and teardown: patient_page.js, as app.js.
  const page = window.PatientPage.create({
    session: () => session, cameraSender: () => camera && camera.sender, close: leaveRoom,
  });
  const { ui, CAMERA_FPS, setState, showError, serverMessage, teardown } = page;

  const mode = fetch("/api/livekit", { cache: "no-store" })
    .then((res) => res.ok ? res.json() : {})
    .then((body) => { livekit = Boolean(body.livekit) && Boolean(LK); return livekit; })
    .catch(() => { livekit = false; return false; });

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
    r.on(LK.RoomEvent.DataReceived, (payload) => page.onRtvi(payload));
    r.on(LK.RoomEvent.Reconnecting, () => setState("reconnecting", "Reconnecting…"));
    r.on(LK.RoomEvent.Reconnected, () => setState("connected", "Reconnected"));
    r.on(LK.RoomEvent.Disconnected, () => {
      if (r !== room || page.ending || !joined) return;
      setState("failed", "Connection lost");
      showError("The connection to the assistant was lost. If this is an emergency, call your local emergency number. Otherwise press Start talking to begin again.");
      teardown();
    });
    return r;
  }

  async function start() {
    session = null;
    if (!(await page.openMicrophone())) return;
    let access;
    try {
      const res = await fetch("/api/livekit/session", { method: "POST", cache: "no-store" });
      if (!res.ok) {
        const refusal = await serverMessage(res);
        setState("failed", refusal ? page.refusalLabel(res.status) : "Could not connect");
        showError(refusal || `The assistant could not be reached (server answered ${res.status}). Please try again in a moment.`);
        teardown();
        return;
      }
      access = await res.json();
      session = { id: access.session_id, token: access.room_token };
      room = openRoom();
      await room.connect(access.url, access.token, { autoSubscribe: true });
      const audioTrack = page.stream.getAudioTracks()[0];
      const videoTrack = page.stream.getVideoTracks()[0];
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
    page.onConnected("Connected: speak whenever you are ready");
  }

  function leaveRoom() {
    const old = room;
    room = null; camera = null; joined = false;
    if (old) old.disconnect();
  }

  const actions = { start, ask: page.askForClinician, mute: page.toggleMute, stop: page.stop };
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
