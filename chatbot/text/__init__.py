"""Text: tokenizers (characters or SentencePiece, with turn markers), the corpus reader, and
the corpus as token ids cached on disk."""
