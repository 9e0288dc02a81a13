// Command queryvectors writes the test vectors of the retrieval query
// (/fil/retrieval/qry/1.0.0: go-fil-markets' retrievalmarket Query and
// QueryResponse) with go-fil-markets' own cbor-gen encoders and decoders, so
// the Python types are checked against Go's bytes, not against a reading of
// the Go source.
//
// For every value it records the bytes go-fil-markets' query stream writes
// (cborutil.WriteCborRPC: the value's MarshalCBOR, nothing around it) and
// Go's own reading of those bytes (amounts as decimal strings, addresses in
// their text form). For malformed nodes it records Go's verdict decoding
// them. The same source builds against two go-fil-markets versions (go.mod:
// v1.28.3, canonical map order; go.v1.26.1.mod: v1.26.1, struct-order maps,
// as lotus-miner's markets wrote them before v1.28). See README.md.
package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"math"
	"math/big"
	"os"
	"runtime/debug"
	"strconv"

	"github.com/filecoin-project/go-address"
	cborutil "github.com/filecoin-project/go-cbor-util"
	rm "github.com/filecoin-project/go-fil-markets/retrievalmarket"
	"github.com/filecoin-project/go-state-types/abi"
	fbig "github.com/filecoin-project/go-state-types/big"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multihash"
	cbg "github.com/whyrusleeping/cbor-gen"
)

// Vector is one well-formed value.
type Vector struct {
	Name string `json:"name"`
	Type string `json:"type"` // Query or QueryResponse
	// the bytes on the wire: "" when go-fil-markets refuses to write the value
	Wire      string `json:"wire"`
	WireError string `json:"wire_error,omitempty"`
	// Go's reading of Wire (nil where there are no bytes)
	Go map[string]any `json:"go"`
}

// Malformed is a node that is not a valid value of Type (or is one Go accepts
// that the Python types refuse on purpose).
type Malformed struct {
	Name string `json:"name"`
	Type string `json:"type"`
	CBOR string `json:"cbor"`
	// "" when go-fil-markets' UnmarshalCBOR accepts it, else its error
	GoError string `json:"go_error"`
}

type Output struct {
	Comment   string      `json:"comment"`
	Markets   string      `json:"go_fil_markets"`
	Vectors   []Vector    `json:"vectors"`
	Malformed []Malformed `json:"malformed"`
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func check(err error) {
	if err != nil {
		panic(err)
	}
}

func mkcid(codec uint64, data string) cid.Cid {
	return cid.NewCidV1(codec, must(multihash.Sum([]byte(data), multihash.SHA2_256, -1)))
}

func pow2(n uint) abi.TokenAmount {
	return fbig.NewFromGo(new(big.Int).Lsh(big.NewInt(1), n))
}

func tokenString(t abi.TokenAmount) string {
	if t.Int == nil {
		return "0"
	}
	return t.String()
}

func addrView(a address.Address) map[string]any {
	if a == address.Undef {
		return map[string]any{"bytes": "", "string": "<empty>"}
	}
	return map[string]any{"bytes": hex.EncodeToString(a.Bytes()), "string": a.String()}
}

func queryView(q rm.Query) map[string]any {
	var piece any
	if q.PieceCID != nil {
		piece = q.PieceCID.String()
	}
	return map[string]any{"PayloadCID": q.PayloadCID.String(), "PieceCID": piece}
}

func responseView(r rm.QueryResponse) map[string]any {
	return map[string]any{
		"Status":                     strconv.FormatUint(uint64(r.Status), 10),
		"PieceCIDFound":              strconv.FormatUint(uint64(r.PieceCIDFound), 10),
		"Size":                       strconv.FormatUint(r.Size, 10),
		"PaymentAddress":             addrView(r.PaymentAddress),
		"MinPricePerByte":            tokenString(r.MinPricePerByte),
		"MaxPaymentInterval":         strconv.FormatUint(r.MaxPaymentInterval, 10),
		"MaxPaymentIntervalIncrease": strconv.FormatUint(r.MaxPaymentIntervalIncrease, 10),
		"Message":                    r.Message,
		"UnsealPrice":                tokenString(r.UnsealPrice),
	}
}

func queryVector(name string, q rm.Query) Vector {
	var wire bytes.Buffer
	if err := cborutil.WriteCborRPC(&wire, &q); err != nil {
		return Vector{name, "Query", "", err.Error(), nil}
	}
	// Go's reading of its own bytes, as its query stream reads them
	var back rm.Query
	check(back.UnmarshalCBOR(bytes.NewReader(wire.Bytes())))
	return Vector{name, "Query", hex.EncodeToString(wire.Bytes()), "", queryView(back)}
}

func responseVector(name string, r rm.QueryResponse) Vector {
	var wire bytes.Buffer
	if err := cborutil.WriteCborRPC(&wire, &r); err != nil {
		return Vector{name, "QueryResponse", "", err.Error(), nil}
	}
	var back rm.QueryResponse
	check(back.UnmarshalCBOR(bytes.NewReader(wire.Bytes())))
	return Vector{name, "QueryResponse", hex.EncodeToString(wire.Bytes()), "", responseView(back)}
}

// -- hand-built CBOR for the malformed nodes (canonical key order) ----------

type field struct {
	key string
	val []byte // nil: the field is left out
}

func header(maj byte, n uint64) []byte {
	var buf bytes.Buffer
	check(cbg.WriteMajorTypeHeader(&buf, maj, n))
	return buf.Bytes()
}

func uintv(n uint64) []byte { return header(cbg.MajUnsignedInt, n) }
func negv(n uint64) []byte  { return header(cbg.MajNegativeInt, n) } // -1-n
func textv(s string) []byte { return append(header(cbg.MajTextString, uint64(len(s))), s...) }
func bytesv(b ...byte) []byte {
	return append(header(cbg.MajByteString, uint64(len(b))), b...)
}
func nullv() []byte { return []byte{0xf6} }
func cidv(c cid.Cid) []byte {
	var buf bytes.Buffer
	check(cbg.WriteCid(&buf, c))
	return buf.Bytes()
}
func listv() []byte { return []byte{0x80} }

func mapv(fields []field) []byte {
	n := 0
	for _, f := range fields {
		if f.val != nil {
			n++
		}
	}
	out := header(cbg.MajMap, uint64(n))
	for _, f := range fields {
		if f.val != nil {
			out = append(out, textv(f.key)...)
			out = append(out, f.val...)
		}
	}
	return out
}

// with is fields with key's value replaced (nil: left out), or added at the
// end when absent.
func with(fields []field, key string, val []byte) []field {
	out := make([]field, 0, len(fields)+1)
	found := false
	for _, f := range fields {
		if f.key == key {
			found = true
			f.val = val
		}
		out = append(out, f)
	}
	if !found {
		out = append(out, field{key, val})
	}
	return out
}

func goVerdict(typ string, b []byte) string {
	var err error
	switch typ {
	case "Query":
		var q rm.Query
		err = q.UnmarshalCBOR(bytes.NewReader(b))
	case "QueryResponse":
		var r rm.QueryResponse
		err = r.UnmarshalCBOR(bytes.NewReader(b))
	}
	if err != nil {
		return err.Error()
	}
	return ""
}

func marketsVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		panic("no build info")
	}
	for _, dep := range info.Deps {
		if dep.Path == "github.com/filecoin-project/go-fil-markets" {
			return dep.Version
		}
	}
	panic("go-fil-markets is not a dependency")
}

func main() {
	version := marketsVersion()
	out := Output{
		Comment: "Generated by tests/interop/queryvectors; do not edit: see its README.",
		Markets: version,
	}

	payload := mkcid(cid.DagProtobuf, "payload")
	rawPayload := mkcid(cid.Raw, "raw payload")
	v0 := cid.NewCidV0(must(multihash.Sum([]byte("v0 payload"), multihash.SHA2_256, -1)))
	commP := append(bytes.Repeat([]byte{0x3c}, 31), 0x0c)
	piece := cid.NewCidV1(cid.FilCommitmentUnsealed, must(multihash.Encode(commP, multihash.SHA2_256_TRUNC254_PADDED)))

	out.Vectors = append(out.Vectors,
		queryVector("query-v0", rm.NewQueryV0(payload)),
		queryVector("query-v1-piece", rm.NewQueryV1(rawPayload, &piece)),
		queryVector("query-cidv0-payload", rm.NewQueryV1(v0, nil)),
	)

	idAddr := must(address.NewIDAddress(1000))
	idAddrMax := must(address.NewIDAddress(math.MaxInt64))
	secp := must(address.NewSecp256k1Address([]byte("a public key")))
	actor := must(address.NewActorAddress([]byte("actor")))
	bls := must(address.NewBLSAddress(bytes.Repeat([]byte{0xb1}, 48)))
	deleg := must(address.NewDelegatedAddress(10, bytes.Repeat([]byte{0xde}, 20)))

	responses := []struct {
		name string
		r    rm.QueryResponse
	}{
		// what a provider answers when it holds the payload, free
		{"available-free", rm.QueryResponse{Status: rm.QueryResponseAvailable, PieceCIDFound: rm.QueryItemAvailable,
			Size: 1 << 20, PaymentAddress: idAddr, MinPricePerByte: fbig.Zero(), MaxPaymentInterval: 1 << 20,
			MaxPaymentIntervalIncrease: 1 << 20, UnsealPrice: fbig.Zero()}},
		{"available-paid-secp", rm.QueryResponse{Status: rm.QueryResponseAvailable, PieceCIDFound: rm.QueryItemAvailable,
			Size: 34359738368, PaymentAddress: secp, MinPricePerByte: fbig.NewInt(2), MaxPaymentInterval: 10485760,
			MaxPaymentIntervalIncrease: 5242880, UnsealPrice: fbig.NewInt(1000)}},
		{"available-high-bit-price", rm.QueryResponse{Status: rm.QueryResponseAvailable, PieceCIDFound: rm.QueryItemUnknown,
			Size: 0, PaymentAddress: actor, MinPricePerByte: fbig.NewInt(255), MaxPaymentInterval: 128,
			UnsealPrice: fbig.NewInt(256)}},
		{"extremes", rm.QueryResponse{Status: rm.QueryResponseAvailable, PieceCIDFound: rm.QueryItemAvailable,
			Size: math.MaxUint64, PaymentAddress: bls, MinPricePerByte: pow2(200), MaxPaymentInterval: math.MaxUint64,
			MaxPaymentIntervalIncrease: math.MaxUint64, UnsealPrice: fbig.Sub(pow2(256), fbig.NewInt(1))}},
		// what go-fil-markets' and boost's providers answer for a payload they do not hold
		{"unavailable", rm.QueryResponse{Status: rm.QueryResponseUnavailable, PieceCIDFound: rm.QueryItemUnavailable,
			PaymentAddress: idAddrMax, MinPricePerByte: fbig.Zero(), UnsealPrice: fbig.Zero(),
			Message: "piece info for cid not found (deal has not been added to a piece yet)"}},
		{"error-delegated", rm.QueryResponse{Status: rm.QueryResponseError, PieceCIDFound: rm.QueryItemUnavailable,
			PaymentAddress: deleg, MinPricePerByte: fbig.Zero(), UnsealPrice: fbig.Zero(),
			Message: "failed to fetch piece: échec ✗"}},
		// a zero-valued amount (nil big.Int) is written as zero
		{"nil-amounts", rm.QueryResponse{Status: rm.QueryResponseAvailable, PaymentAddress: idAddr}},
		// go-address refuses to write an undefined address
		{"undefined-address", rm.QueryResponse{Status: rm.QueryResponseUnavailable, PieceCIDFound: rm.QueryItemUnavailable,
			MinPricePerByte: fbig.Zero(), UnsealPrice: fbig.Zero()}},
	}
	for _, r := range responses {
		out.Vectors = append(out.Vectors, responseVector(r.name, r.r))
	}

	// malformed (and odd) nodes, edits of the fields of "available-paid-secp" / "query-v1-piece"
	resp := []field{
		{"Size", uintv(34359738368)},
		{"Status", uintv(0)},
		{"Message", textv("")},
		{"UnsealPrice", bytesv(0, 0x03, 0xe8)},
		{"PieceCIDFound", uintv(0)},
		{"PaymentAddress", bytesv(secp.Bytes()...)},
		{"MinPricePerByte", bytesv(0, 2)},
		{"MaxPaymentInterval", uintv(10485760)},
		{"MaxPaymentIntervalIncrease", uintv(5242880)},
	}
	params := []field{{"PieceCID", cidv(piece)}}
	query := []field{{"PayloadCID", cidv(rawPayload)}, {"QueryParams", mapv(params)}}
	type mut struct {
		name, typ string
		node      []byte
	}
	muts := []mut{
		// the unedited fields: Go's bytes again, as a check of this builder
		{"response-as-built", "QueryResponse", mapv(resp)},
		{"query-as-built", "Query", mapv(query)},
		{"query-missing-PayloadCID", "Query", mapv(with(query, "PayloadCID", nil))},
		{"query-missing-QueryParams", "Query", mapv(with(query, "QueryParams", nil))},
		{"query-missing-PieceCID", "Query", mapv(with(query, "QueryParams", mapv(with(params, "PieceCID", nil))))},
		{"query-extra-field", "Query", mapv(with(query, "Extra", textv("x")))},
		{"query-PayloadCID-bytes", "Query", mapv(with(query, "PayloadCID", bytesv(1, 2, 3)))},
		{"query-PayloadCID-string", "Query", mapv(with(query, "PayloadCID", textv(rawPayload.String())))},
		{"query-PayloadCID-null", "Query", mapv(with(query, "PayloadCID", nullv()))},
		{"query-QueryParams-null", "Query", mapv(with(query, "QueryParams", nullv()))},
		{"query-QueryParams-list", "Query", mapv(with(query, "QueryParams", listv()))},
		{"query-PieceCID-string", "Query", mapv(with(query, "QueryParams", mapv(with(params, "PieceCID", textv(piece.String())))))},
		{"query-PieceCID-int", "Query", mapv(with(query, "QueryParams", mapv(with(params, "PieceCID", uintv(1)))))},
		{"query-null", "Query", nullv()},
		{"query-list", "Query", listv()},
		{"query-empty-map", "Query", mapv(nil)},
		{"response-null", "QueryResponse", nullv()},
		{"response-list", "QueryResponse", listv()},
		{"response-string", "QueryResponse", textv("x")},
		{"response-empty-map", "QueryResponse", mapv(nil)},
		{"response-extra-field", "QueryResponse", mapv(with(resp, "Extra", uintv(1)))},
		{"response-Status-string", "QueryResponse", mapv(with(resp, "Status", textv("0")))},
		{"response-Status-negative", "QueryResponse", mapv(with(resp, "Status", negv(0)))},
		{"response-Status-unknown", "QueryResponse", mapv(with(resp, "Status", uintv(3)))},
		{"response-PieceCIDFound-unknown", "QueryResponse", mapv(with(resp, "PieceCIDFound", uintv(7)))},
		{"response-Size-negative", "QueryResponse", mapv(with(resp, "Size", negv(0)))},
		{"response-Size-bytes", "QueryResponse", mapv(with(resp, "Size", bytesv(1)))},
		{"response-Message-bytes", "QueryResponse", mapv(with(resp, "Message", bytesv('h', 'i')))},
		{"response-Message-null", "QueryResponse", mapv(with(resp, "Message", nullv()))},
		{"response-interval-negative", "QueryResponse", mapv(with(resp, "MaxPaymentInterval", negv(0)))},
		{"response-increase-string", "QueryResponse", mapv(with(resp, "MaxPaymentIntervalIncrease", textv("1")))},
		{"response-address-empty", "QueryResponse", mapv(with(resp, "PaymentAddress", bytesv()))},
		{"response-address-string", "QueryResponse", mapv(with(resp, "PaymentAddress", textv(secp.String())))},
		{"response-address-null", "QueryResponse", mapv(with(resp, "PaymentAddress", nullv()))},
		{"response-address-unknown-protocol", "QueryResponse", mapv(with(resp, "PaymentAddress", bytesv(9, 1)))},
		{"response-address-secp-short", "QueryResponse", mapv(with(resp, "PaymentAddress", bytesv(append([]byte{1}, make([]byte, 19)...)...)))},
		{"response-price-int", "QueryResponse", mapv(with(resp, "MinPricePerByte", uintv(2)))},
		{"response-price-null", "QueryResponse", mapv(with(resp, "MinPricePerByte", nullv()))},
		{"response-price-bad-sign", "QueryResponse", mapv(with(resp, "MinPricePerByte", bytesv(2, 5)))},
		{"response-price-negative", "QueryResponse", mapv(with(resp, "MinPricePerByte", bytesv(1, 5)))},
		{"response-price-leading-zero", "QueryResponse", mapv(with(resp, "MinPricePerByte", bytesv(0, 0, 5)))},
		{"response-price-sign-only", "QueryResponse", mapv(with(resp, "MinPricePerByte", bytesv(0)))},
		{"response-unseal-negative", "QueryResponse", mapv(with(resp, "UnsealPrice", bytesv(1, 1)))},
	}
	for _, f := range resp {
		muts = append(muts, mut{"response-missing-" + f.key, "QueryResponse", mapv(with(resp, f.key, nil))})
	}
	for _, m := range muts {
		out.Malformed = append(out.Malformed, Malformed{m.name, m.typ, hex.EncodeToString(m.node), goVerdict(m.typ, m.node)})
	}

	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", " ")
	enc.SetEscapeHTML(false)
	check(enc.Encode(out))
}
