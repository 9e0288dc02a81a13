"""The retrieval query, ``/fil/retrieval/qry/1.0.0``: how a client learns a
provider's ask (prices, payment intervals, where to pay) before proposing.

The client writes one :class:`Query` and reads one :class:`QueryResponse`,
both DAG-CBOR maps with go-fil-markets' ``retrievalmarket`` field names
(``Query``, ``QueryParams``, ``QueryResponse``)::

    type QueryParams struct { PieceCID nullable &Any }
    type Query struct { PayloadCID &Any  QueryParams QueryParams }
    type QueryResponse struct {
        Status Int  PieceCIDFound Int  Size Int  PaymentAddress Bytes
        MinPricePerByte Bytes  MaxPaymentInterval Int
        MaxPaymentIntervalIncrease Int  Message String  UnsealPrice Bytes
    }

Each is written bare on the stream, with no length prefix, as go-fil-markets'
query stream (``cborutil.WriteCborRPC``) and boost's query handler write it.

Checked against go-fil-markets' own cbor-gen code (``tests/test_retrieval_query.py``,
vectors from ``tests/interop/queryvectors``): what we write is byte for byte
what v1.28.3 writes (canonical map order: ``Size``, ``Status``, ...), and we
read what it and v1.26.1 write (v1.27 and older: the struct's field order).
Decoding is stricter than Go's: every field is required, unknown fields,
statuses and negative or non-canonical amounts are refused. One difference
is left: an undefined payment address is written as empty bytes, which
go-address neither writes nor reads ("cbor input should not contain empty
addresses"), so a Go client cannot read such an answer. ``datatransfer
serve`` never sends one (its ask names the home wallet's address, free or
not); a library user answering queries should give the ask an address.
No I/O here: :mod:`~datatransfer.markets.retrieval.network` serves it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from datatransfer.ipld import dagcbor
from datatransfer.ipld.cid import CID
from datatransfer.markets.retrieval.filecoin import (
    Address,
    RetrievalTypeError,
    encode_big_int,
    read_address,
    read_map,
    read_str_field,
    read_token_amount,
    read_uint64,
)

__all__ = ["QUERY_PROTOCOL", "Query", "QueryResponse", "QueryStatus"]

QUERY_PROTOCOL = "/fil/retrieval/qry/1.0.0"
#: Most bytes a query or its answer may take.
MAX_MESSAGE = 16 * 1024


class QueryStatus(enum.IntEnum):
    """go-fil-markets ``QueryResponseStatus`` (and ``QueryItemStatus``)."""

    AVAILABLE = 0
    UNAVAILABLE = 1
    ERROR = 2


def _decode(data: bytes, where: str) -> Any:
    """A DAG-CBOR value whose maps may have their keys in any order (go-fil-markets
    before v1.28 writes them in its structs' field order); duplicates are refused."""
    try:
        return dagcbor.decode(data, sorted_keys=False)
    except ValueError as exc:
        raise RetrievalTypeError(where, f"not DAG-CBOR: {exc}") from None


@dataclass(frozen=True, slots=True)
class Query:
    """Does the provider hold ``payload_cid``, and at what price?"""

    payload_cid: CID
    piece_cid: CID | None = None

    def encode(self) -> bytes:
        return dagcbor.encode({"PayloadCID": self.payload_cid,
                               "QueryParams": {"PieceCID": self.piece_cid}})

    @classmethod
    def decode(cls, data: bytes) -> Query:
        fields = read_map(_decode(data, "Query"), "Query", ("PayloadCID", "QueryParams"))
        params = read_map(fields["QueryParams"], "Query.QueryParams", ("PieceCID",))
        payload, piece = fields["PayloadCID"], params["PieceCID"]
        if not isinstance(payload, CID):
            raise RetrievalTypeError("Query.PayloadCID", "expected a link")
        if piece is not None and not isinstance(piece, CID):
            raise RetrievalTypeError("Query.QueryParams.PieceCID", "expected a link or null")
        return cls(payload, piece)


@dataclass(frozen=True, slots=True)
class QueryResponse:
    """The provider's answer: whether it holds the payload, how big it is
    (0: unknown), and its ask."""

    status: QueryStatus
    size: int = 0
    payment_address: Address = Address()
    min_price_per_byte: int = 0
    max_payment_interval: int = 0
    max_payment_interval_increase: int = 0
    message: str = ""
    unseal_price: int = 0
    piece_cid_found: QueryStatus = QueryStatus.UNAVAILABLE

    FIELDS = ("Status", "PieceCIDFound", "Size", "PaymentAddress", "MinPricePerByte",
              "MaxPaymentInterval", "MaxPaymentIntervalIncrease", "Message", "UnsealPrice")

    def encode(self) -> bytes:
        return dagcbor.encode({
            "Status": int(self.status), "PieceCIDFound": int(self.piece_cid_found),
            "Size": self.size, "PaymentAddress": self.payment_address.raw,
            "MinPricePerByte": encode_big_int(self.min_price_per_byte),
            "MaxPaymentInterval": self.max_payment_interval,
            "MaxPaymentIntervalIncrease": self.max_payment_interval_increase,
            "Message": self.message, "UnsealPrice": encode_big_int(self.unseal_price)})

    @classmethod
    def decode(cls, data: bytes) -> QueryResponse:
        w = "QueryResponse"
        f = read_map(_decode(data, w), w, cls.FIELDS)

        def status(name: str) -> QueryStatus:
            value = read_uint64(f[name], f"{w}.{name}")
            try:
                return QueryStatus(value)
            except ValueError:
                raise RetrievalTypeError(f"{w}.{name}", f"unknown status {value}") from None

        address = (Address() if f["PaymentAddress"] == b""
                   else read_address(f["PaymentAddress"], f"{w}.PaymentAddress"))
        return cls(status=status("Status"), piece_cid_found=status("PieceCIDFound"),
                   size=read_uint64(f["Size"], f"{w}.Size"), payment_address=address,
                   min_price_per_byte=read_token_amount(f["MinPricePerByte"],
                                                        f"{w}.MinPricePerByte"),
                   max_payment_interval=read_uint64(f["MaxPaymentInterval"],
                                                    f"{w}.MaxPaymentInterval"),
                   max_payment_interval_increase=read_uint64(
                       f["MaxPaymentIntervalIncrease"], f"{w}.MaxPaymentIntervalIncrease"),
                   message=read_str_field(f["Message"], f"{w}.Message"),
                   unseal_price=read_token_amount(f["UnsealPrice"], f"{w}.UnsealPrice"))
