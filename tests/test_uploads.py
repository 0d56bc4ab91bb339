"""Storing uploads: the page saves the same upload on every rerun while a training run may be
reading it, so a second save must leave the file alone."""

import os

from app_pages.uploads import save_upload


def test_saving_the_same_upload_again_leaves_the_file_alone(tmp_path):
    content = b"some text to train on\n" * 100
    first = save_upload(tmp_path / "uploads", "notes.txt", content, max_mb=1)
    inode = os.stat(first).st_ino
    os.utime(first, (1, 1))
    again = save_upload(tmp_path / "uploads", "notes.txt", content, max_mb=1)
    assert again == first and os.stat(again).st_ino == inode and os.stat(again).st_mtime == 1
    assert again.read_bytes() == content
    assert sorted(p.name for p in (tmp_path / "uploads").iterdir()) == [first.name]  # no .tmp left
