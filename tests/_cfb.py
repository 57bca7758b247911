"""A minimal writer of OLE2 compound files (MS-CFB version 3), for building TXRM test files.

No Python library writes compound files, so the tests build their own: 512-byte
sectors, one FAT (at most 109 FAT sectors: files up to ~7 MB), a mini stream
for streams under 4096 bytes, storages and streams from ``"Dir/Stream"`` paths.
Siblings are chained through their right links in CFB order (length, then
upper-case name), which is a valid, if unbalanced, tree.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Mapping

SECTOR = 512
MINI = 64
CUTOFF = 4096
FREESECT, ENDOFCHAIN, FATSECT, NOSTREAM = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD, 0xFFFFFFFF


class _Entry:
    def __init__(self, name: str, kind: int, data: bytes = b"") -> None:
        self.name, self.kind, self.data = name, kind, data
        self.children: dict[str, _Entry] = {}
        self.left = self.right = self.child = NOSTREAM
        self.start, self.size = ENDOFCHAIN, 0


def _key(e: _Entry) -> tuple[int, str]:
    return (len(e.name), e.name.upper())


def write_cfb(path: str, streams: Mapping[str, bytes]) -> None:
    """Write a compound file holding ``streams`` (``{"Storage/Stream": bytes}``)."""
    root = _Entry("Root Entry", 5)
    for full, data in streams.items():
        parts = full.split("/")
        node = root
        for p in parts[:-1]:
            node = node.children.setdefault(p, _Entry(p, 1))
        node.children[parts[-1]] = _Entry(parts[-1], 2, bytes(data))

    entries: list[_Entry] = []

    def number(e: _Entry) -> None:
        entries.append(e)
        for c in e.children.values():
            number(c)

    number(root)
    ids = {id(e): i for i, e in enumerate(entries)}
    for e in entries:
        kids = sorted(e.children.values(), key=_key)
        if kids:
            e.child = ids[id(kids[0])]
            for a, b in itertools.pairwise(kids):
                a.right = ids[id(b)]

    fat: list[int] = []
    body = bytearray()

    def alloc(data: bytes, table: list[int], buf: bytearray, size: int) -> int:
        if not data:
            return ENDOFCHAIN
        n = -(-len(data) // size)
        start = len(table)
        table.extend(range(start + 1, start + n))
        table.append(ENDOFCHAIN)
        buf.extend(data.ljust(n * size, b"\0"))
        return start

    # big streams in regular sectors, small ones in the mini stream
    minifat: list[int] = []
    ministream = bytearray()
    for e in entries:
        if e.kind == 2:
            e.size = len(e.data)
            if e.size >= CUTOFF:
                e.start = alloc(e.data, fat, body, SECTOR)
            elif e.size:
                e.start = alloc(e.data, minifat, ministream, MINI)
    root.size = len(ministream)
    root.start = alloc(bytes(ministream), fat, body, SECTOR) if ministream else ENDOFCHAIN
    minifat_bytes = struct.pack(f"<{len(minifat)}I", *minifat) if minifat else b""
    if minifat_bytes:
        minifat_bytes = minifat_bytes.ljust(-(-len(minifat_bytes) // SECTOR) * SECTOR, b"\xff")
    minifat_start = alloc(minifat_bytes, fat, body, SECTOR) if minifat else ENDOFCHAIN
    n_minifat = len(minifat_bytes) // SECTOR

    dir_bytes = bytearray()
    for e in entries:
        name = e.name.encode("utf-16-le") + b"\0\0"
        dir_bytes += struct.pack(
            "<64sHBBIII16sIQQIQ",
            name,
            len(name),
            e.kind,
            1,  # black
            e.left,
            e.right,
            e.child,
            b"\0" * 16,
            0,
            0,
            0,
            e.start if (e.kind == 5 or e.size) else ENDOFCHAIN,
            e.size,
        )
    empty = struct.pack(
        "<64sHBBIII16sIQQIQ", b"", 0, 0, 0, NOSTREAM, NOSTREAM, NOSTREAM, b"", 0, 0, 0, 0, 0
    )
    while len(dir_bytes) % SECTOR:
        dir_bytes += empty
    dir_start = alloc(bytes(dir_bytes), fat, body, SECTOR)

    # the FAT describes itself too: grow it until it covers every sector
    n_fat = 1
    while n_fat * (SECTOR // 4) < len(fat) + n_fat:
        n_fat += 1
    if n_fat > 109:
        raise ValueError("test CFB writer: file too large (more than 109 FAT sectors)")
    fat_start = len(fat)
    fat.extend([FATSECT] * n_fat)
    fat.extend([FREESECT] * (n_fat * (SECTOR // 4) - len(fat)))
    difat = list(range(fat_start, fat_start + n_fat)) + [FREESECT] * (109 - n_fat)

    header = struct.pack(
        "<8s16sHHHHH6sIIIIIIIII",
        bytes.fromhex("D0CF11E0A1B11AE1"),
        b"\0" * 16,
        0x3E,
        3,
        0xFFFE,
        9,
        6,
        b"\0" * 6,
        0,
        n_fat,
        dir_start,
        0,
        CUTOFF,
        minifat_start,
        n_minifat,
        ENDOFCHAIN,
        0,
    ) + struct.pack("<109I", *difat)
    assert len(header) == SECTOR
    with open(path, "wb") as f:
        f.write(header)
        f.write(body)
        f.write(struct.pack(f"<{len(fat)}I", *fat))
