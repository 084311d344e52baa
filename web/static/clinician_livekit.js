// The console's call when this server runs LiveKit rooms (LIVEKIT__ENABLED, docs/rooms.md).
//
// With LiveKit the join of a claimed escalation carries no SDP: the server answers
// {url, token, room, expires_at}, a clinician token for the patient's room, and the browser joins
// that room itself with LiveKit's SDK (vendor/livekit-client.umd.js). clinician.js asks
// `enabled()` once it has the microphone, and then hands the call to `connect()`; what it gets
// back is closed like a peer connection when the call ends. Without LiveKit, `enabled()` is
// false (GET /api/livekit is 404) and the console's WebRTC call runs as before.
"use strict";

window.ClinicianLiveKit = (() => {
  const LK = window.LivekitClient;
  let mode = null;

  function enabled() {
    if (!mode) {
      mode = fetch("/api/livekit", { cache: "no-store", credentials: "same-origin" })
        .then((res) => (res.ok ? res.json() : {}))
        .then((body) => Boolean(body.livekit) && Boolean(LK))
        .catch(() => false);
    }
    return mode;
  }

  // access: the join's answer; ui: the console's elements; hooks: {onState(state, label), onLost()}.
  async function connect(access, stream, ui, hooks) {
    if (!access || !access.url || !access.token) throw new Error("The server gave no way into the patient's room.");
    const room = new LK.Room({ adaptiveStream: false, dynacast: false });
    const extra = []; // audio elements of the agent's voice (the patient's plays in ui.patientAudio)
    let closed = false, joined = false; // a failed connect is the caller's error, not a lost call
    room.on(LK.RoomEvent.TrackSubscribed, (track, _publication, participant) => {
      const patient = String(participant.identity || "").startsWith("patient-");
      if (patient && track.kind === "video") track.attach(ui.patientVideo);
      else if (patient) track.attach(ui.patientAudio);
      else if (track.kind === "audio") { const el = track.attach(); el.hidden = true; document.body.append(el); extra.push(el); }
    });
    room.on(LK.RoomEvent.TrackUnsubscribed, (track) => track.detach());
    room.on(LK.RoomEvent.Reconnecting, () => hooks.onState("connecting", "Reconnecting…"));
    room.on(LK.RoomEvent.Reconnected, () => hooks.onState("connected", "Connected with the patient"));
    room.on(LK.RoomEvent.Disconnected, () => { if (joined && !closed) hooks.onLost(); });
    const close = () => {
      closed = true;
      room.disconnect();
      extra.forEach((el) => el.remove());
    };
    try {
      await room.connect(access.url, access.token, { autoSubscribe: true });
      const audioTrack = stream.getAudioTracks()[0];
      const videoTrack = stream.getVideoTracks()[0];
      if (audioTrack) await room.localParticipant.publishTrack(audioTrack, { source: LK.Track.Source.Microphone });
      if (videoTrack) await room.localParticipant.publishTrack(videoTrack, { source: LK.Track.Source.Camera });
      joined = true;
    } catch (err) {
      close();
      throw new Error(`Could not join the patient's room (${err.message}).`);
    }
    hooks.onState("connected", "Connected with the patient");
    return { close };
  }

  return { enabled, connect };
})();
