"""A full disk for tests: a file opened for writing that takes ``room`` bytes, then fails
with ENOSPC, as a write to a filling disk does."""

from __future__ import annotations

import errno
import os


class FullDisk:
    """Wraps an open file: writes beyond ``room`` bytes (none by default) fail with ENOSPC,
    what fitted staying written (half a file)."""

    def __init__(self, file, room: int = 0):
        self.file, self.room = file, room

    def write(self, data):
        if len(data) > self.room:
            self.file.write(bytes(data[: self.room]))
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()
