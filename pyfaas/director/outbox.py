"""What the Director's state wants done on the wire: frames to send, peers
to close.

Owns :class:`Outbox`. Every part of the state queues its frames here (by
peer id, never touching a socket); the event loop takes them once per turn
(:meth:`Outbox.take`) and writes them, each peer's frames in the order they
were queued, and closes the peers asked for once their frames are out.
"""

import time

from ..wire import protocol as p
from ..wire.protocol import ERROR, ROLE_CLIENT, frame_parts


class Outbox:
    """Frames to send and peers to close, per peer id.

    Args:
        peers: the state's ``{peer id: Peer}``: frames go only to peers in
            it (a peer that left gets nothing).
        counts: the cluster's :class:`~.tallies.Counts`, told of every
            error the Director itself answers a client with (or None).
    """

    def __init__(self, peers, counts=None):
        self.peers = peers
        self.counts = counts
        self.frames = {}          # peer id -> byte pieces, in order
        self.closing = {}         # peer id -> why it is closed
        self.client_errors = 0    # ERROR frames sent to clients (statistics)

    def send(self, peer_id, type_, rid=0, meta=None, payload=b"", flags=0):
        """Queue one frame for ``peer_id`` (see protocol.frame_parts)."""
        peer = self.peers.get(peer_id)
        if peer is None:
            return
        if type_ == ERROR and peer.role == ROLE_CLIENT:
            self.client_errors += 1
        parts = frame_parts(type_, rid, meta, payload, flags)
        out = self.frames.get(peer_id)
        if out is None:
            self.frames[peer_id] = parts
        else:
            out += parts

    def error(self, peer_id, rid, code, message, **extra):
        """Queue an ERROR frame (meta: ``code``, ``message`` and ``extra``)."""
        extra.update(code=code, message=message)
        peer = self.peers.get(peer_id)
        if self.counts is not None and peer is not None \
                and peer.role == ROLE_CLIENT:
            self.counts.client_error(code, message, time.time())
        self.send(peer_id, p.ERROR, rid, extra)

    def close(self, peer_id, reason):
        """Close ``peer_id`` once the frames queued for it are written."""
        peer = self.peers.get(peer_id)
        if peer is not None and not peer.closing:
            peer.closing = True
            peer.handlers = None  # what it still sends is not handled
            self.closing[peer_id] = reason

    def take(self):
        """``(frames, closing)``: what was queued since the last take; the
        lists of byte pieces are the caller's to keep."""
        frames, closing = self.frames, self.closing
        self.frames = {}
        if closing:
            self.closing = {}
        return frames, closing

    def forget(self, peer_id):
        """Drop what was queued for a peer that is gone."""
        self.frames.pop(peer_id, None)
        self.closing.pop(peer_id, None)
