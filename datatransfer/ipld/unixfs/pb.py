"""The UnixFS ``Data`` protobuf carried in a DAG-PB node's ``Data`` field.

Schema (proto2)::

    message Data {
      enum DataType { Raw = 0; Directory = 1; File = 2; Metadata = 3;
                      Symlink = 4; HAMTShard = 5; }
      required DataType Type = 1;
      optional bytes Data = 2;
      optional uint64 filesize = 3;
      repeated uint64 blocksizes = 4;
      optional uint64 hashType = 5;
      optional uint64 fanout = 6;
      optional uint32 mode = 7;
      optional UnixTime mtime = 8;
    }
    message UnixTime { required int64 Seconds = 1;
                       optional fixed32 FractionalNanoseconds = 2; }

Fields are written in field-number order and ``blocksizes`` unpacked, as Go
and JS UnixFS write them, so imported DAGs get the same CIDs. Decoding refuses
a missing or unknown ``Type``, wrong wire types, repeated singular fields and
out-of-range values; fields of unknown number are skipped (newer writers may
add some), and ``blocksizes`` is read packed or unpacked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from datatransfer.ipld import protobuf as pb
from datatransfer.ipld.errors import CodecError


class UnixFSError(CodecError):
    """A UnixFS node that is malformed or not what the operation needs."""


class DataType(IntEnum):
    RAW = 0
    DIRECTORY = 1
    FILE = 2
    METADATA = 3
    SYMLINK = 4
    HAMT_SHARD = 5


@dataclass(frozen=True)
class UnixTime:
    """A modification time: seconds since the epoch and optional nanoseconds."""

    seconds: int
    nanos: int | None = None

    def encode(self) -> bytes:
        w = pb.Writer().varint(1, self.seconds)
        if self.nanos is not None:
            w.fixed32(2, self.nanos)
        return w.getvalue()

    @classmethod
    def decode(cls, buf: bytes | bytearray | memoryview) -> UnixTime:
        seconds: int | None = None
        nanos: int | None = None
        for num, wire_type, value in pb.iter_fields(buf):
            if num == 1:
                pb.expect_wire_type(num, wire_type, pb.VARINT, "UnixTime")
                if seconds is not None:
                    raise UnixFSError("duplicate UnixTime.Seconds")
                seconds = pb.to_int64(value)  # type: ignore[arg-type]
            elif num == 2:
                pb.expect_wire_type(num, wire_type, pb.I32, "UnixTime")
                if nanos is not None:
                    raise UnixFSError("duplicate UnixTime.FractionalNanoseconds")
                nanos = value  # type: ignore[assignment]
                if not 0 < nanos <= 999_999_999:  # type: ignore[operator]
                    raise UnixFSError(f"UnixTime nanoseconds out of range: {nanos}")
        if seconds is None:
            raise UnixFSError("UnixTime without Seconds")
        return cls(seconds, nanos)


@dataclass
class UnixFSData:
    """A decoded UnixFS ``Data`` message; ``None`` means the field is absent."""

    type: DataType
    data: bytes | None = None
    filesize: int | None = None
    blocksizes: list[int] = field(default_factory=list)
    hash_type: int | None = None
    fanout: int | None = None
    mode: int | None = None
    mtime: UnixTime | None = None

    def encode(self) -> bytes:
        w = pb.Writer().varint(1, int(self.type))
        if self.data is not None:
            w.bytes(2, self.data)
        if self.filesize is not None:
            w.varint(3, self.filesize)
        for size in self.blocksizes:
            w.varint(4, size)
        if self.hash_type is not None:
            w.varint(5, self.hash_type)
        if self.fanout is not None:
            w.varint(6, self.fanout)
        if self.mode is not None:
            if not 0 <= self.mode < 1 << 32:
                raise UnixFSError(f"mode out of range: {self.mode}")
            w.varint(7, self.mode)
        if self.mtime is not None:
            w.bytes(8, self.mtime.encode())
        return w.getvalue()

    @classmethod
    def decode(cls, buf: bytes | bytearray | memoryview) -> UnixFSData:
        try:
            return cls._decode(buf)
        except UnixFSError:
            raise
        except pb.ProtobufError as exc:
            raise UnixFSError(f"malformed UnixFS Data: {exc}") from None

    @classmethod
    def _decode(cls, buf: bytes | bytearray | memoryview) -> UnixFSData:
        seen: set[int] = set()
        values: dict[int, object] = {}
        blocksizes: list[int] = []
        for num, wire_type, value in pb.iter_fields(buf):
            if num == 4:
                if wire_type == pb.LEN:  # packed form
                    blocksizes.extend(pb.decode_packed_varints(value))  # type: ignore[arg-type]
                else:
                    pb.expect_wire_type(num, wire_type, pb.VARINT, "Data")
                    blocksizes.append(value)  # type: ignore[arg-type]
                continue
            if num > 8:
                continue  # unknown field: skipped
            if num in seen:
                raise UnixFSError(f"duplicate UnixFS Data field {num}")
            seen.add(num)
            expected = pb.LEN if num in (2, 8) else pb.VARINT
            pb.expect_wire_type(num, wire_type, expected, "Data")
            values[num] = value
        if 1 not in values:
            raise UnixFSError("UnixFS Data without Type")
        try:
            dtype = DataType(values[1])
        except ValueError:
            raise UnixFSError(f"unknown UnixFS type {values[1]}") from None
        mode = values.get(7)
        if mode is not None and mode >= 1 << 32:  # type: ignore[operator]
            raise UnixFSError(f"mode out of range: {mode}")
        mtime = values.get(8)
        return cls(
            type=dtype,
            data=bytes(values[2]) if 2 in values else None,  # type: ignore[arg-type]
            filesize=values.get(3),  # type: ignore[arg-type]
            blocksizes=blocksizes,
            hash_type=values.get(5),  # type: ignore[arg-type]
            fanout=values.get(6),  # type: ignore[arg-type]
            mode=mode,  # type: ignore[arg-type]
            mtime=UnixTime.decode(mtime) if mtime is not None else None,  # type: ignore[arg-type]
        )
