"""Blocks: verified on creation, and not hashed again by the stores."""

from __future__ import annotations

import pytest

from datatransfer.ipld import multihash
from datatransfer.ipld.block import Block
from datatransfer.ipld.blockstore import MemoryBlockstore, SqliteBlockstore
from datatransfer.ipld.cid import CID, DAG_CBOR
from datatransfer.ipld.errors import HashMismatch


def test_block_of_hashes_and_unpacks():
    block = Block.of(b"hello", codec=DAG_CBOR)
    cid, data = block
    assert cid == CID.of(b"hello", codec=DAG_CBOR) and data == b"hello"
    assert block == (cid, data)
    with pytest.raises(AttributeError):
        block.data = b"other"  # type: ignore[misc]


def test_block_refuses_bytes_that_do_not_match():
    with pytest.raises(HashMismatch):
        Block(CID.of(b"hello"), b"HELLO")


@pytest.mark.parametrize("store_cls", [MemoryBlockstore, SqliteBlockstore])
def test_stores_do_not_hash_a_block_twice(store_cls, monkeypatch):
    blocks = [Block.of(bytes([i]) * 100) for i in range(5)]
    plain = (CID.of(b"x"), b"x")
    calls = []
    real = multihash.digest

    def counting(code, data):
        calls.append(len(data))
        return real(code, data)

    monkeypatch.setattr(multihash, "digest", counting)
    with store_cls() as store:
        store.put_many(blocks)
        assert calls == []  # Blocks were verified when made
        store.put_many([plain])
        assert calls == [1]  # plain pairs are still verified
        assert store.get(blocks[3].cid) == blocks[3].data
