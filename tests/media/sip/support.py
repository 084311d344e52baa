"""SIPp on loopback: pcap files of G.711 RTP made from speech, scenario files, and running SIPp."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from media.audio_files import read_mono_int16
from media.sip.dtmf import TelephoneEvent
from media.sip.g711 import PCMU, Codec
from media.sip.rtp import SAMPLES_PER_PACKET, RtpSender

DTMF_PT = 101


def rtp_frames_from_wav(wav: Path, *, lead_s: float = 0.0, tail_s: float = 0.0) -> np.ndarray:
    """The WAV as 8 kHz int16 with silence around it, cut to whole 20 ms frames."""
    samples = read_mono_int16(wav, 8000)
    pad = lambda seconds: np.zeros(int(seconds * 8000), dtype=np.int16)  # noqa: E731
    audio = np.concatenate([pad(lead_s), samples, pad(tail_s)])
    return audio[: audio.size - audio.size % SAMPLES_PER_PACKET]


def write_pcap(
    path: Path,
    audio: np.ndarray,
    *,
    codec: Codec = PCMU,
    digits: dict[float, str] | None = None,
    src: tuple[str, int] = ("127.0.0.1", 6000),
    dst: tuple[str, int] = ("127.0.0.1", 20000),
) -> float:
    """Write RTP (20 ms packets) of ``audio`` as a pcap of Ethernet/IPv4/UDP frames.

    ``digits`` maps a time (seconds into the audio) to a keypad digit sent there as RFC 4733
    events (100 ms of event packets instead of audio, then three end packets). Returns the
    duration in seconds.
    """
    sender = RtpSender(codec.payload_type)
    packets: list[tuple[float, bytes]] = []
    events = {round(at / 0.02): digit for at, digit in (digits or {}).items()}
    frames = audio.size // SAMPLES_PER_PACKET
    index = 0
    while index < frames:
        at = index * 0.02
        if index in events:
            start = sender.timestamp
            for step in range(1, 6):
                payload = TelephoneEvent(events[index], False, 10, step * SAMPLES_PER_PACKET).to_bytes()
                packet = sender.event_packet(payload, start, marker=step == 1, payload_type=DTMF_PT)
                packets.append((at + (step - 1) * 0.02, packet))
            end = TelephoneEvent(events[index], True, 10, 5 * SAMPLES_PER_PACKET).to_bytes()
            for repeat in range(3):
                packet = sender.event_packet(end, start, marker=False, payload_type=DTMF_PT)
                packets.append((at + 0.08 + repeat * 0.001, packet))
            sender.timestamp += 5 * SAMPLES_PER_PACKET
            index += 5
            continue
        frame = audio[index * SAMPLES_PER_PACKET : (index + 1) * SAMPLES_PER_PACKET]
        packets.append((at, sender.packet(codec.encode(frame))))
        index += 1
    with path.open("wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for at, rtp in packets:
            frame = _ethernet_ipv4_udp(rtp, src, dst)
            seconds, micros = 1_700_000_000 + int(at), int(round((at % 1) * 1e6)) % 1_000_000
            out.write(struct.pack("<IIII", seconds, micros, len(frame), len(frame)))
            out.write(frame)
    return frames * 0.02


def _checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _ethernet_ipv4_udp(payload: bytes, src: tuple[str, int], dst: tuple[str, int]) -> bytes:
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
        socket.inet_aton(src[0]), socket.inet_aton(dst[0]),
    )  # fmt: skip
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    ethernet = b"\x00\x00\x00\x00\x00\x02" + b"\x00\x00\x00\x00\x00\x01" + b"\x08\x00"
    return ethernet + ip + udp


# --- scenarios -------------------------------------------------------------------------------------

HEADERS = """Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Test Patient" <sip:patient@[local_ip]:[local_port]>;tag=[pid]SIPpTag[call_number]
      To: <sip:agent@[remote_ip]:[remote_port]>{to_tag}
      Call-ID: [call_id]
      Max-Forwards: 70
      Contact: <sip:patient@[local_ip]:[local_port]>"""

SDP = """v=0
      o=patient 1 {version} IN IP4 [media_ip]
      s=-
      c=IN IP4 [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-16
      a=ptime:20
      a={direction}"""


def _request(method: str, cseq: int, *, sdp: str = "", in_dialog: bool = True, extra: str = "") -> str:
    headers = HEADERS.format(to_tag="[peer_tag_param]" if in_dialog else "")
    body_headers = "Content-Type: application/sdp\n      " if sdp else ""
    return f"""
  <send retrans="500">
    <![CDATA[
      {method} sip:agent@[remote_ip]:[remote_port] SIP/2.0
      {headers}
      CSeq: {cseq} {method}
      {extra}{body_headers}Content-Length: [len]

      {sdp}
    ]]>
  </send>"""


def invite(cseq: int = 1, direction: str = "sendrecv", *, in_dialog: bool = False, check: str = "") -> str:
    sdp = SDP.format(version=cseq, direction=direction)
    answer = ""
    if check:
        answer = f"""
    <action>
      <ereg regexp="a={check}" search_in="body" check_it="true" assign_to="direction"/>
    </action>"""
    return (
        _request("INVITE", cseq, sdp=sdp, in_dialog=in_dialog)
        + f"""
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="true">{answer}
  </recv>"""
        + ack(cseq)
    )


def ack(cseq: int) -> str:
    return f"""
  <send>
    <![CDATA[
      ACK sip:agent@[remote_ip]:[remote_port] SIP/2.0
      {HEADERS.format(to_tag="[peer_tag_param]")}
      CSeq: {cseq} ACK
      Content-Length: 0
    ]]>
  </send>"""


def play(pcap: Path) -> str:
    return f"""
  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>"""


def pause(ms: int) -> str:
    return f'\n  <pause milliseconds="{ms}"/>'


def bye(cseq: int) -> str:
    return _request("BYE", cseq) + '\n  <recv response="200" crlf="true"/>'


def await_bye() -> str:
    """The server hangs up: answer its BYE."""
    return """
  <recv request="BYE"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>"""


def cancel_after_ringing() -> str:
    return (
        _request("INVITE", 1, sdp=SDP.format(version=1, direction="sendrecv"), in_dialog=False)
        + """
  <recv response="100" optional="true"/>
  <recv response="180"/>
  <send>
    <![CDATA[
      CANCEL sip:agent@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      From: "Test Patient" <sip:patient@[local_ip]:[local_port]>;tag=[pid]SIPpTag[call_number]
      To: <sip:agent@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      Max-Forwards: 70
      CSeq: 1 CANCEL
      Content-Length: 0
    ]]>
  </send>
  <recv response="200"/>
  <recv response="487"/>
  <send>
    <![CDATA[
      ACK sip:agent@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      From: "Test Patient" <sip:patient@[local_ip]:[local_port]>;tag=[pid]SIPpTag[call_number]
      To: <sip:agent@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      Max-Forwards: 70
      CSeq: 1 ACK
      Content-Length: 0
    ]]>
  </send>"""
    )


def call_through_a_proxy(hold_ms: int) -> str:
    """A call through a record-routing proxy (Kamailio): INVITE, 200, ACK, ``hold_ms`` of call, BYE.

    The 200's Record-Route set is kept (``rrs``) and the ACK and BYE go to the bridge's Contact
    through that route (``[next_url]``, ``[routes]``), as RFC 3261 12.2 asks: a proxy that stays
    in the path drops in-dialog requests that skip its route.
    """
    sdp = SDP.format(version=1, direction="sendrecv")
    return (
        _request("INVITE", 1, sdp=sdp, in_dialog=False)
        + """
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="true" rrs="true"/>"""
        + _routed("ACK", 1, retrans=False)
        + pause(hold_ms)
        + _routed("BYE", 2, retrans=True)
        + '\n  <recv response="200" crlf="true"/>'
    )


def _routed(method: str, cseq: int, *, retrans: bool) -> str:
    return f"""
  <send{' retrans="500"' if retrans else ""}>
    <![CDATA[
      {method} [next_url] SIP/2.0
      {HEADERS.format(to_tag="[peer_tag_param]")}
      [routes]
      CSeq: {cseq} {method}
      Content-Length: 0
    ]]>
  </send>"""


def scenario(name: str, *steps: str) -> str:
    body = "".join(steps)
    return f'<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="{name}">{body}\n</scenario>\n'


# --- running SIPp ----------------------------------------------------------------------------------


def free_udp_port(even: bool = False, span: int = 1) -> int:
    """A port (and the ``span - 1`` above it) nobody holds right now on 127.0.0.1."""
    for _ in range(200):
        port = 20000 + secrets.randbelow(40000)
        port -= port % 2 if even else 0
        sockets = []
        try:
            for offset in range(span):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sockets.append(s)
                s.bind(("127.0.0.1", port + offset))
            return port
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free UDP port")


@dataclass
class SippRun:
    returncode: int
    output: str
    media_port: int
    errors: str


async def run_sipp(
    folder: Path,
    xml: str,
    server_port: int,
    *,
    calls: int = 1,
    rate: int = 1,
    timeout_s: float = 60.0,
    transport: str = "u1",
    limit: int | None = None,
    extra: tuple[str, ...] = (),
) -> SippRun:
    """Run one SIPp scenario against 127.0.0.1:``server_port`` (bounded by ``timeout_s``).

    ``limit``: calls at once (default: all of them); ``extra``: more SIPp arguments.
    """
    sipp = shutil.which("sipp")
    assert sipp, "SIPp is needed: apt-get install sip-tester (scripts/test.sh installs it)"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "scenario.xml"
    path.write_text(xml)
    media_port = free_udp_port(even=True, span=4)
    command = [
        sipp, f"127.0.0.1:{server_port}", "-sf", str(path), "-i", "127.0.0.1", "-p", str(free_udp_port()),
        "-mi", "127.0.0.1", "-mp", str(media_port), "-t", transport, "-m", str(calls),
        "-l", str(limit or calls), "-r", str(rate), "-nostdin", "-timeout", f"{int(timeout_s)}s",
        "-timeout_error", "-trace_err", "-max_recv_loops", "1000", *extra,
    ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *command, cwd=folder, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout_s + 15)
    except TimeoutError:
        process.kill()
        output, _ = await process.communicate()
    errors = "".join(p.read_text(errors="replace")[-3000:] for p in folder.glob("*_errors.log"))
    return SippRun(int(process.returncode or 0), output.decode(errors="replace")[-4000:], media_port, errors)


# --- what the server sent ----------------------------------------------------------------------------


class RtpRecorder:
    """Records every RTP packet the server sends, per call, with when and where it went.

    It hooks each call's media as soon as the call has one (well before the answer), through
    ``CallMedia.on_sent``; the destination shows the packets went to SIPp's media port.
    """

    def __init__(self, server) -> None:
        self._server = server
        self.sent: dict[str, list[tuple[float, bytes, tuple[str, int]]]] = {}
        self.ports: dict[str, int] = {}
        self.peak_calls = 0
        self._task: asyncio.Task | None = None

    def __enter__(self) -> RtpRecorder:
        self._task = asyncio.get_running_loop().create_task(self._watch())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _watch(self) -> None:
        import time

        while True:
            self.peak_calls = max(self.peak_calls, self._server.active_calls)
            for call in list(self._server.calls.values()):
                if call.media is not None and call.tag not in self.sent:
                    packets: list[tuple[float, bytes, tuple[str, int]]] = []
                    self.sent[call.tag] = packets
                    self.ports[call.tag] = call.media.port
                    call.media.on_sent.append(lambda p, t, log=packets: log.append((time.monotonic(), p, t)))
            await asyncio.sleep(0.005)

    def audio(self, tag: str, start: float = 0.0, end: float = float("inf")) -> np.ndarray:
        """What one call's caller was sent between two times, as 8 kHz int16 (PCMU)."""
        from media.sip.rtp import RtpPacket

        packets = [RtpPacket.parse(p) for at, p, _ in self.sent[tag] if start <= at < end]
        pieces = [PCMU.decode(packet.payload) for packet in packets]
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int16)

    def destinations(self) -> set[tuple[str, int]]:
        return {target for packets in self.sent.values() for _, _, target in packets}


def loud_seconds(audio: np.ndarray, threshold: float = 300.0) -> float:
    """How much of ``audio`` (8 kHz) is sound rather than silence, in seconds."""
    usable = audio[: audio.size - audio.size % 160].astype(np.float64)
    if usable.size == 0:
        return 0.0
    rms = np.sqrt(np.mean(usable.reshape(-1, 160) ** 2, axis=1))
    return float(np.count_nonzero(rms > threshold) * 0.02)
