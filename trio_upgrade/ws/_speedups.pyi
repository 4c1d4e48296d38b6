from typing import final

from typing_extensions import Buffer

@final
class Masker:
    """Unmasks (or masks) the successive pieces of one frame's payload."""

    def __init__(self, key: Buffer, /) -> None: ...
    def process(self, data: Buffer, /) -> bytearray: ...

def mask(data: Buffer, key: Buffer, offset: int = 0, /) -> bytes: ...
