"""The phone bridge: callers reach the agent through a SIP trunk or a PBX.

Modules, one concept each:

==============  =================================================================
``message``     SIP messages: bounded parser, serialiser, TCP framing, responses
``headers``     structured header values (name-addr, Via, parameters, tags)
``sdp``         SDP offer/answer for one G.711 audio stream + telephone-events
``auth``        who may call: CIDR allow-list, digest authentication
``transaction`` transactions and RFC 3261 timers (retransmissions, 64*T1)
``dialog``      the dialog as the called party; in-dialog requests (BYE)
``flow``        the way back to a peer (UDP address or TCP connection)
``g711``        mu-law / A-law tables
``rtp``         RTP packets and the sender's sequence/timestamp state
``jitter``      fixed-delay jitter buffer
``dtmf``        RFC 4733 telephone-events, SIP INFO digits
``ports``       the RTP port range
``media``       one call's RTP session (symmetric RTP)
``transport``   the pipecat transport of one call
``call``        one call from INVITE to tear-down
``server``      ``SipServer``: listeners, dispatch, limits
``uac``         a small caller for tests and the benchmark
==============  =================================================================

See ``docs/telephony.md``.
"""
