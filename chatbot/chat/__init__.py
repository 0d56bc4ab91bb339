"""Chatting: a conversation whose memory is the recurrent state (session.py), choosing tokens
(sampling.py, beam.py), and conversations saved with their memory (conversations.py,
snapshots.py)."""
