"""Media for the calls the server answers itself (voicemail, issue 10).

Layer: ``mss.sip`` may import ``mss.media``; ``mss.media`` may import ``mss.features``,
``mss.storage`` and ``fastsip`` (checked by ``tests/test_layers.py``).

* :mod:`~mss.media.g711`: G.711 µ-law / A-law with numpy lookup tables;
* :mod:`~mss.media.rtp`: RTP packets (RFC 3550), RFC 4733 telephone-events, the recording
  buffer that orders packets by sequence number;
* :mod:`~mss.media.sdp`: SDP offer/answer (RFC 3264) for one G.711 audio stream;
* :mod:`~mss.media.audio`: greeting WAV files, the beep, silence detection;
* :mod:`~mss.media.session`: RTP port allocation, the paced sender shared by every stream, and
  one :class:`~mss.media.session.MediaSession` per answered call (play, then record).
"""

from __future__ import annotations

__all__: tuple[str, ...] = ()
