// Command retrievalvectors writes the test vectors of the Filecoin retrieval
// deal types (tests/data/retrieval-vectors.json) with go-retrieval-types' own
// encoders, so the Python types are checked against Go's bytes, not against
// a reading of the schema.
//
// For every value it records the DAG-CBOR bytes of its IPLD binding (bindnode
// + dagcbor.Encode: what go-data-transfer v2, Lassie and boost put on the
// wire), the bytes of its cbor-gen encoder (what go-fil-markets put inside
// go-data-transfer v1 messages: struct-order maps), and Go's own reading of
// it (amounts as decimal strings, statuses by name). For malformed nodes it
// records whether Go accepts them, and why not. See README.md.
package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"os"
	"strconv"

	"github.com/filecoin-project/go-address"
	rt "github.com/filecoin-project/go-retrieval-types"
	"github.com/filecoin-project/go-state-types/abi"
	fbig "github.com/filecoin-project/go-state-types/big"
	"github.com/filecoin-project/go-state-types/builtin/v8/paych"
	"github.com/filecoin-project/go-state-types/crypto"
	"github.com/ipfs/go-cid"
	"github.com/ipld/go-ipld-prime/codec/dagcbor"
	"github.com/ipld/go-ipld-prime/codec/dagjson"
	"github.com/ipld/go-ipld-prime/datamodel"
	cidlink "github.com/ipld/go-ipld-prime/linking/cid"
	"github.com/ipld/go-ipld-prime/node/basicnode"
	"github.com/ipld/go-ipld-prime/traversal/selector"
	"github.com/ipld/go-ipld-prime/traversal/selector/builder"
	"github.com/multiformats/go-multihash"
)

// Vector is one well-formed value.
type Vector struct {
	Name    string `json:"name"`
	Type    string `json:"type"`
	DagCBOR string `json:"dagcbor"`
	CborGen string `json:"cborgen"` // "" when cbor-gen refuses the value
	// why cbor-gen refuses it (it cannot write an undefined address)
	CborGenError string         `json:"cborgen_error,omitempty"`
	Go           map[string]any `json:"go"`
}

// Malformed is a node that is not a valid value of Type, or is one Go
// accepts that the Python types refuse on purpose.
type Malformed struct {
	Name    string `json:"name"`
	Type    string `json:"type"`
	DagCBOR string `json:"dagcbor"`
	// "" when go-retrieval-types' FromNode accepts it, else its error
	GoError string `json:"go_error"`
}

// Interval is Go's answer of the Params payment arithmetic for one input.
type Interval struct {
	Params           string `json:"params"` // the proposal vector whose Params are used
	FundsReceived    string `json:"funds_received"`
	Sent             uint64 `json:"sent"`
	InFinalization   bool   `json:"in_finalization"`
	Outstanding      string `json:"outstanding_balance"`
	NextInterval     uint64 `json:"next_interval"`
	IntervalLowerBnd uint64 `json:"interval_lower_bound"`
}

type Output struct {
	Comment   string      `json:"comment"`
	Statuses  []string    `json:"statuses"`
	Vectors   []Vector    `json:"vectors"`
	Malformed []Malformed `json:"malformed"`
	Intervals []Interval  `json:"intervals"`
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func mkcid(codec uint64, data string) cid.Cid {
	mh := must(multihash.Sum([]byte(data), multihash.SHA2_256, -1))
	return cid.NewCidV1(codec, mh)
}

func amount(s string) abi.TokenAmount {
	return must(fbig.FromString(s))
}

func pow2(n uint) abi.TokenAmount {
	return fbig.NewFromGo(new(big.Int).Lsh(big.NewInt(1), n))
}

func dagjsonOf(n datamodel.Node) string {
	if n == nil {
		return "null"
	}
	var buf bytes.Buffer
	if err := dagjson.Encode(n, &buf); err != nil {
		panic(err)
	}
	return buf.String()
}

func cidOrNil(c *cid.Cid) any {
	if c == nil {
		return nil
	}
	return c.String()
}

func tokenString(t abi.TokenAmount) string {
	if t.Int == nil {
		return "0"
	}
	return t.String()
}

func paramsView(p rt.Params) map[string]any {
	return map[string]any{
		"Selector":                dagjsonOf(p.Selector.Node),
		"PieceCID":                cidOrNil(p.PieceCID),
		"PricePerByte":            tokenString(p.PricePerByte),
		"PaymentInterval":         strconv.FormatUint(p.PaymentInterval, 10),
		"PaymentIntervalIncrease": strconv.FormatUint(p.PaymentIntervalIncrease, 10),
		"UnsealPrice":             tokenString(p.UnsealPrice),
	}
}

func proposalVector(name string, dp rt.DealProposal) Vector {
	canonical := must(rt.BindnodeRegistry.TypeToBytes(&dp, dagcbor.Encode))
	var cg bytes.Buffer
	if err := dp.MarshalCBOR(&cg); err != nil {
		panic(err)
	}
	// Go's reading of its own bytes, not of the struct it started from
	back := must(rt.DealProposalFromNode(decode(canonical)))
	return Vector{name, string(rt.DealProposalType), hex.EncodeToString(canonical),
		hex.EncodeToString(cg.Bytes()), "", map[string]any{
			"PayloadCID": back.PayloadCID.String(),
			"ID":         strconv.FormatUint(uint64(back.ID), 10),
			"Params":     paramsView(back.Params),
		}}
}

func responseVector(name string, dr rt.DealResponse) Vector {
	canonical := must(rt.BindnodeRegistry.TypeToBytes(&dr, dagcbor.Encode))
	var cg bytes.Buffer
	if err := dr.MarshalCBOR(&cg); err != nil {
		panic(err)
	}
	back := must(rt.DealResponseFromNode(decode(canonical)))
	return Vector{name, string(rt.DealResponseType), hex.EncodeToString(canonical),
		hex.EncodeToString(cg.Bytes()), "", map[string]any{
			"Status":      strconv.FormatUint(uint64(back.Status), 10),
			"StatusName":  back.Status.String(),
			"ID":          strconv.FormatUint(uint64(back.ID), 10),
			"PaymentOwed": tokenString(back.PaymentOwed),
			"Message":     back.Message,
		}}
}

func addrView(a address.Address) map[string]any {
	if a == address.Undef {
		return map[string]any{"bytes": "", "string": "<empty>"}
	}
	return map[string]any{"bytes": hex.EncodeToString(a.Bytes()), "string": a.String()}
}

func paymentVector(name string, dp rt.DealPayment) Vector {
	canonical := must(rt.BindnodeRegistry.TypeToBytes(&dp, dagcbor.Encode))
	var cg bytes.Buffer
	cgErr := ""
	if err := dp.MarshalCBOR(&cg); err != nil {
		cgErr = err.Error()
		cg.Reset()
	}
	back := must(rt.DealPaymentFromNode(decode(canonical)))
	view := map[string]any{
		"ID":             strconv.FormatUint(uint64(back.ID), 10),
		"PaymentChannel": addrView(back.PaymentChannel),
		"PaymentVoucher": nil,
	}
	if sv := back.PaymentVoucher; sv != nil {
		v := map[string]any{
			"ChannelAddr":     addrView(sv.ChannelAddr),
			"TimeLockMin":     strconv.FormatInt(int64(sv.TimeLockMin), 10),
			"TimeLockMax":     strconv.FormatInt(int64(sv.TimeLockMax), 10),
			"SecretHash":      hex.EncodeToString(sv.SecretHash),
			"Extra":           nil,
			"Lane":            strconv.FormatUint(sv.Lane, 10),
			"Nonce":           strconv.FormatUint(sv.Nonce, 10),
			"Amount":          tokenString(sv.Amount),
			"MinSettleHeight": strconv.FormatInt(int64(sv.MinSettleHeight), 10),
			"Signature":       nil,
		}
		merges := []any{}
		for _, m := range sv.Merges {
			merges = append(merges, []string{strconv.FormatUint(m.Lane, 10), strconv.FormatUint(m.Nonce, 10)})
		}
		v["Merges"] = merges
		if sv.Extra != nil {
			v["Extra"] = map[string]any{
				"Actor":  addrView(sv.Extra.Actor),
				"Method": strconv.FormatUint(uint64(sv.Extra.Method), 10),
				"Data":   hex.EncodeToString(sv.Extra.Data),
			}
		}
		if sv.Signature != nil {
			v["Signature"] = map[string]any{"Type": int(sv.Signature.Type), "Data": hex.EncodeToString(sv.Signature.Data)}
		}
		view["PaymentVoucher"] = v
	}
	return Vector{name, string(rt.DealPaymentType), hex.EncodeToString(canonical),
		hex.EncodeToString(cg.Bytes()), cgErr, view}
}

func decode(b []byte) datamodel.Node {
	nb := basicnode.Prototype.Any.NewBuilder()
	if err := dagcbor.Decode(nb, bytes.NewReader(b)); err != nil {
		panic(err)
	}
	return nb.Build()
}

// edit copies n with the entry at path replaced by repl (added when the last
// step is a new map key), or removed when repl is nil. List steps are indexes.
func edit(n datamodel.Node, path []string, repl datamodel.Node) datamodel.Node {
	switch n.Kind() {
	case datamodel.Kind_Map:
		return must(buildMap(func(ma datamodel.MapAssembler) {
			found := false
			it := n.MapIterator()
			for !it.Done() {
				k, v := must2(it.Next())
				ks := must(k.AsString())
				if ks == path[0] {
					found = true
					if len(path) == 1 {
						if repl == nil {
							continue
						}
						v = repl
					} else {
						v = edit(v, path[1:], repl)
					}
				}
				check(ma.AssembleKey().AssignString(ks))
				check(ma.AssembleValue().AssignNode(v))
			}
			if !found {
				if len(path) != 1 || repl == nil {
					panic(fmt.Sprintf("no field %q", path[0]))
				}
				check(ma.AssembleKey().AssignString(path[0]))
				check(ma.AssembleValue().AssignNode(repl))
			}
		}))
	case datamodel.Kind_List:
		idx := must(strconv.Atoi(path[0]))
		nb := basicnode.Prototype.List.NewBuilder()
		la := must(nb.BeginList(n.Length()))
		it := n.ListIterator()
		for !it.Done() {
			i, v := must2i(it.Next())
			if int(i) == idx {
				if len(path) == 1 {
					if repl == nil {
						continue
					}
					v = repl
				} else {
					v = edit(v, path[1:], repl)
				}
			}
			check(la.AssembleValue().AssignNode(v))
		}
		check(la.Finish())
		return nb.Build()
	}
	panic("edit: not a map or list")
}

func buildMap(fn func(datamodel.MapAssembler)) (datamodel.Node, error) {
	nb := basicnode.Prototype.Map.NewBuilder()
	ma, err := nb.BeginMap(-1)
	if err != nil {
		return nil, err
	}
	fn(ma)
	if err := ma.Finish(); err != nil {
		return nil, err
	}
	return nb.Build(), nil
}

func must2(k, v datamodel.Node, err error) (datamodel.Node, datamodel.Node) {
	if err != nil {
		panic(err)
	}
	return k, v
}

func must2i(i int64, v datamodel.Node, err error) (int64, datamodel.Node) {
	if err != nil {
		panic(err)
	}
	return i, v
}

func check(err error) {
	if err != nil {
		panic(err)
	}
}

func encodeNode(n datamodel.Node) []byte {
	var buf bytes.Buffer
	check(dagcbor.Encode(n, &buf))
	return buf.Bytes()
}

func goVerdict(typ string, b []byte) string {
	nb := basicnode.Prototype.Any.NewBuilder()
	if err := dagcbor.Decode(nb, bytes.NewReader(b)); err != nil {
		return "dagcbor: " + err.Error()
	}
	var err error
	switch typ {
	case string(rt.DealProposalType):
		_, err = rt.DealProposalFromNode(nb.Build())
	case string(rt.DealResponseType):
		_, err = rt.DealResponseFromNode(nb.Build())
	case string(rt.DealPaymentType):
		_, err = rt.DealPaymentFromNode(nb.Build())
	}
	if err != nil {
		return err.Error()
	}
	return ""
}

func str(s string) datamodel.Node    { return basicnode.NewString(s) }
func integer(i int64) datamodel.Node { return basicnode.NewInt(i) }
func byts(b ...byte) datamodel.Node  { return basicnode.NewBytes(b) }
func link(c cid.Cid) datamodel.Node  { return basicnode.NewLink(cidlink.Link{Cid: c}) }

func main() {
	ssb := builder.NewSelectorSpecBuilder(basicnode.Prototype.Any)
	exploreAll := ssb.ExploreRecursive(
		// the selector Lassie and boost send for a whole DAG
		selector.RecursionLimitNone(), ssb.ExploreAll(ssb.ExploreRecursiveEdge())).Node()
	matcher := ssb.Matcher().Node()
	firstLink := ssb.ExploreFields(func(efsb builder.ExploreFieldsSpecBuilder) {
		efsb.Insert("Links", ssb.ExploreIndex(0, ssb.ExploreFields(func(e builder.ExploreFieldsSpecBuilder) {
			e.Insert("Hash", ssb.Matcher())
		})))
	}).Node()

	payload := mkcid(cid.DagProtobuf, "payload")
	rawPayload := mkcid(cid.Raw, "raw payload")
	v0 := cid.NewCidV0(must(multihash.Sum([]byte("v0 payload"), multihash.SHA2_256, -1)))
	// a piece commitment: a 32-byte digest under sha2-256-trunc254-padded
	commP := bytes.Repeat([]byte{0x3c}, 31)
	commP = append(commP, 0x0c) // the top two bits clear, as in a real CommP
	piece := cid.NewCidV1(cid.FilCommitmentUnsealed, must(multihash.Encode(commP, multihash.SHA2_256_TRUNC254_PADDED)))

	out := Output{Comment: "Generated by tests/interop/retrievalvectors (go-retrieval-types v1.2.0); do not edit: see its README."}
	for s := rt.DealStatusNew; s <= rt.DealStatusFinalizingBlockstore; s++ {
		out.Statuses = append(out.Statuses, s.String())
	}

	params := func(sel datamodel.Node, piece *cid.Cid, price abi.TokenAmount, interval, incr uint64, unseal abi.TokenAmount) rt.Params {
		return rt.Params{Selector: rt.CborGenCompatibleNode{Node: sel}, PieceCID: piece,
			PricePerByte: price, PaymentInterval: interval, PaymentIntervalIncrease: incr, UnsealPrice: unseal}
	}
	proposals := []struct {
		name string
		dp   rt.DealProposal
	}{
		// what Lassie sends: free, explore-all, no piece
		{"free-explore-all", rt.DealProposal{PayloadCID: payload, ID: 1, Params: params(exploreAll, nil, fbig.Zero(), 0, 0, fbig.Zero())}},
		{"free-matcher-raw-root", rt.DealProposal{PayloadCID: rawPayload, ID: 0, Params: params(matcher, nil, fbig.Zero(), 0, 0, fbig.Zero())}},
		{"no-selector-with-piece", rt.DealProposal{PayloadCID: payload, ID: 7, Params: params(nil, &piece, fbig.Zero(), 0, 0, fbig.Zero())}},
		{"paid-small", rt.DealProposal{PayloadCID: payload, ID: 42, Params: params(exploreAll, &piece, fbig.NewInt(2), 1<<20, 1<<20, fbig.NewInt(1000))}},
		{"paid-attofil", rt.DealProposal{PayloadCID: v0, ID: 1234567890123, Params: params(firstLink, &piece, amount("1000000000"), 10485760, 5242880, amount("1000000000000000000"))}},
		{"price-high-bit", rt.DealProposal{PayloadCID: payload, ID: 3, Params: params(exploreAll, nil, fbig.NewInt(255), 128, 0, fbig.NewInt(256))}},
		{"extremes", rt.DealProposal{PayloadCID: payload, ID: math.MaxUint64, Params: params(exploreAll, &piece, pow2(200), math.MaxUint64, math.MaxUint64, fbig.Sub(pow2(256), fbig.NewInt(1)))}},
		{"int64-boundary", rt.DealProposal{PayloadCID: payload, ID: math.MaxInt64 + 1, Params: params(exploreAll, nil, pow2(63), math.MaxInt64, 1<<32, pow2(64))}},
		{"nil-amounts", rt.DealProposal{PayloadCID: payload, ID: 9, Params: rt.Params{Selector: rt.CborGenCompatibleNode{Node: exploreAll}, PaymentInterval: 1}}},
	}
	byName := map[string]rt.Params{}
	for _, p := range proposals {
		out.Vectors = append(out.Vectors, proposalVector(p.name, p.dp))
		byName[p.name] = p.dp.Params
	}

	for s := rt.DealStatusNew; s <= rt.DealStatusFinalizingBlockstore; s++ {
		owed := fbig.Zero()
		msg := ""
		switch s {
		case rt.DealStatusFundsNeeded, rt.DealStatusFundsNeededLastPayment, rt.DealStatusFundsNeededUnseal:
			owed = amount("2097152")
		case rt.DealStatusRejected:
			msg = "deal rejected: price per byte too low"
		case rt.DealStatusDealNotFound:
			msg = "retrieval query offer not found: content not found"
		case rt.DealStatusErrored:
			msg = "unsealing: échec ✗"
		}
		out.Vectors = append(out.Vectors, responseVector("status-"+s.String(), rt.DealResponse{Status: s, ID: rt.DealID(s) * 1000, PaymentOwed: owed, Message: msg}))
	}
	out.Vectors = append(out.Vectors,
		responseVector("response-extremes", rt.DealResponse{Status: rt.DealStatusFundsNeeded, ID: math.MaxUint64, PaymentOwed: pow2(255), Message: ""}),
		responseVector("response-nil-owed", rt.DealResponse{Status: rt.DealStatusAccepted, ID: 5}),
	)

	idAddr := must(address.NewIDAddress(1000))
	idAddrMax := must(address.NewIDAddress(math.MaxInt64))
	secp := must(address.NewSecp256k1Address([]byte("a public key")))
	actor := must(address.NewActorAddress([]byte("actor")))
	bls := must(address.NewBLSAddress(bytes.Repeat([]byte{0xb1}, 48)))
	deleg := must(address.NewDelegatedAddress(10, bytes.Repeat([]byte{0xde}, 20)))
	sig := func(t crypto.SigType, n int) *crypto.Signature {
		return &crypto.Signature{Type: t, Data: bytes.Repeat([]byte{byte(n)}, n)}
	}
	payments := []struct {
		name string
		dp   rt.DealPayment
	}{
		{"payment-no-voucher", rt.DealPayment{ID: 1, PaymentChannel: idAddr}},
		{"payment-undef-channel", rt.DealPayment{ID: 2, PaymentChannel: address.Undef}},
		{"payment-secp-voucher", rt.DealPayment{ID: 42, PaymentChannel: actor, PaymentVoucher: &paych.SignedVoucher{
			ChannelAddr: actor, TimeLockMin: 10, TimeLockMax: 0, SecretHash: nil, Lane: 0, Nonce: 1,
			Amount: amount("2097152"), MinSettleHeight: 0, Signature: sig(crypto.SigTypeSecp256k1, 65)}}},
		{"payment-bls-voucher-extra-merges", rt.DealPayment{ID: math.MaxUint64, PaymentChannel: bls, PaymentVoucher: &paych.SignedVoucher{
			ChannelAddr: bls, TimeLockMin: -5, TimeLockMax: math.MaxInt64, SecretHash: []byte("secret hash"),
			Extra: &paych.ModVerifyParams{Actor: secp, Method: 2, Data: []byte{1, 2, 3}},
			Lane:  math.MaxUint64, Nonce: 1 << 40, Amount: pow2(100), MinSettleHeight: math.MinInt64,
			Merges: []paych.Merge{{Lane: 1, Nonce: 2}, {Lane: math.MaxUint64, Nonce: 0}}, Signature: sig(crypto.SigTypeBLS, 96)}}},
		{"payment-unsigned-voucher", rt.DealPayment{ID: 3, PaymentChannel: deleg, PaymentVoucher: &paych.SignedVoucher{
			ChannelAddr: deleg, Extra: &paych.ModVerifyParams{Actor: idAddrMax, Method: 0, Data: nil}, Amount: fbig.Zero()}}},
		{"payment-zero-amount-voucher", rt.DealPayment{ID: 4, PaymentChannel: secp, PaymentVoucher: &paych.SignedVoucher{
			ChannelAddr: address.Undef, Merges: []paych.Merge{}, Signature: &crypto.Signature{Type: crypto.SigTypeSecp256k1}}}},
	}
	for _, p := range payments {
		out.Vectors = append(out.Vectors, paymentVector(p.name, p.dp))
	}

	// malformed (and odd) nodes: each an edit of a valid vector's node
	base := map[string][]byte{}
	for _, v := range out.Vectors {
		base[v.Name] = must(hex.DecodeString(v.DagCBOR))
	}
	type mut struct {
		name, from string
		path       []string
		repl       datamodel.Node // nil: delete
	}
	muts := []mut{
		{"proposal-missing-ID", "paid-small", []string{"ID"}, nil},
		{"proposal-missing-PayloadCID", "paid-small", []string{"PayloadCID"}, nil},
		{"proposal-missing-Params", "paid-small", []string{"Params"}, nil},
		{"proposal-missing-Selector", "paid-small", []string{"Params", "Selector"}, nil},
		{"proposal-missing-PieceCID", "paid-small", []string{"Params", "PieceCID"}, nil},
		{"proposal-missing-UnsealPrice", "paid-small", []string{"Params", "UnsealPrice"}, nil},
		{"proposal-extra-field", "paid-small", []string{"Extra"}, str("x")},
		{"proposal-params-extra-field", "paid-small", []string{"Params", "Extra"}, integer(1)},
		{"proposal-ID-string", "paid-small", []string{"ID"}, str("42")},
		{"proposal-ID-negative", "paid-small", []string{"ID"}, integer(-1)},
		{"proposal-PayloadCID-bytes", "paid-small", []string{"PayloadCID"}, byts(1, 2, 3)},
		{"proposal-PayloadCID-string", "paid-small", []string{"PayloadCID"}, str(payload.String())},
		{"proposal-PieceCID-string", "paid-small", []string{"Params", "PieceCID"}, str(piece.String())},
		{"proposal-Params-list", "paid-small", []string{"Params"}, emptyList()},
		{"proposal-price-int", "paid-small", []string{"Params", "PricePerByte"}, integer(2)},
		{"proposal-price-bad-sign", "paid-small", []string{"Params", "PricePerByte"}, byts(2, 5)},
		{"proposal-price-sign-only", "paid-small", []string{"Params", "PricePerByte"}, byts(0)},
		{"proposal-price-negative-zero", "paid-small", []string{"Params", "PricePerByte"}, byts(1)},
		{"proposal-price-leading-zero", "paid-small", []string{"Params", "PricePerByte"}, byts(0, 0, 5)},
		{"proposal-price-negative", "paid-small", []string{"Params", "PricePerByte"}, byts(1, 5)},
		{"proposal-unseal-negative", "paid-small", []string{"Params", "UnsealPrice"}, byts(1, 1)},
		{"proposal-interval-negative", "paid-small", []string{"Params", "PaymentInterval"}, integer(-1)},
		{"proposal-interval-string", "paid-small", []string{"Params", "PaymentIntervalIncrease"}, str("1")},
		{"response-missing-Message", "status-DealStatusAccepted", []string{"Message"}, nil},
		{"response-missing-PaymentOwed", "status-DealStatusAccepted", []string{"PaymentOwed"}, nil},
		{"response-Message-bytes", "status-DealStatusAccepted", []string{"Message"}, byts('h', 'i')},
		{"response-Status-negative", "status-DealStatusAccepted", []string{"Status"}, integer(-1)},
		{"response-Status-unknown", "status-DealStatusAccepted", []string{"Status"}, integer(99)},
		{"response-owed-negative", "status-DealStatusFundsNeeded", []string{"PaymentOwed"}, byts(1, 9)},
		{"response-extra-field", "status-DealStatusAccepted", []string{"Extra"}, basicnode.NewBool(true)},
		{"payment-missing-PaymentVoucher", "payment-no-voucher", []string{"PaymentVoucher"}, nil},
		{"payment-address-unknown-protocol", "payment-no-voucher", []string{"PaymentChannel"}, byts(9, 1)},
		{"payment-address-one-byte", "payment-no-voucher", []string{"PaymentChannel"}, byts(0)},
		{"payment-address-secp-short", "payment-no-voucher", []string{"PaymentChannel"}, byts(append([]byte{1}, make([]byte, 19)...)...)},
		{"payment-address-id-nonminimal", "payment-no-voucher", []string{"PaymentChannel"}, byts(0, 0x80, 0)},
		{"payment-address-id-trailing", "payment-no-voucher", []string{"PaymentChannel"}, byts(0, 1, 2)},
		{"payment-voucher-map", "payment-no-voucher", []string{"PaymentVoucher"}, must(buildMap(func(ma datamodel.MapAssembler) {}))},
		{"payment-voucher-short-tuple", "payment-secp-voucher", []string{"PaymentVoucher", "10"}, nil},
		{"payment-voucher-sig-delegated", "payment-secp-voucher", []string{"PaymentVoucher", "10"}, byts(3, 1, 2)},
		{"payment-voucher-sig-empty", "payment-secp-voucher", []string{"PaymentVoucher", "10"}, byts()},
		{"payment-voucher-sig-too-long", "payment-secp-voucher", []string{"PaymentVoucher", "10"}, byts(append([]byte{1}, make([]byte, 200)...)...)},
		{"payment-voucher-merges-null", "payment-secp-voucher", []string{"PaymentVoucher", "9"}, datamodel.Null},
		{"payment-voucher-amount-bad-sign", "payment-secp-voucher", []string{"PaymentVoucher", "7"}, byts(7, 1)},
		{"payment-voucher-amount-negative", "payment-secp-voucher", []string{"PaymentVoucher", "7"}, byts(1, 1)},
		{"payment-voucher-lane-negative", "payment-secp-voucher", []string{"PaymentVoucher", "5"}, integer(-1)},
		{"payment-voucher-channel-bad", "payment-secp-voucher", []string{"PaymentVoucher", "0"}, byts(1, 2, 3)},
	}
	for _, m := range muts {
		b := encodeNode(edit(decode(base[m.from]), m.path, m.repl))
		typ := ""
		for _, v := range out.Vectors {
			if v.Name == m.from {
				typ = v.Type
			}
		}
		out.Malformed = append(out.Malformed, Malformed{m.name, typ, hex.EncodeToString(b), goVerdict(typ, b)})
	}
	for _, typ := range []string{string(rt.DealProposalType), string(rt.DealResponseType), string(rt.DealPaymentType)} {
		for _, whole := range []struct {
			name string
			node datamodel.Node
		}{{"null", datamodel.Null}, {"string", str("x")}, {"list", emptyList()}, {"empty-map", must(buildMap(func(datamodel.MapAssembler) {}))}} {
			b := encodeNode(whole.node)
			out.Malformed = append(out.Malformed, Malformed{typ + "-" + whole.name, typ, hex.EncodeToString(b), goVerdict(typ, b)})
		}
	}

	// the payment arithmetic of Params, for the provider and the client
	funds := []abi.TokenAmount{fbig.Zero(), fbig.NewInt(999), fbig.NewInt(1000), fbig.NewInt(1001), fbig.NewInt(1000 + 2*(1<<20)), fbig.NewInt(1000 + 2*(3<<20) - 1), amount("1000000000")}
	sents := []uint64{0, 1, 1<<20 - 1, 1 << 20, 1<<20 + 1, 3 << 20, 6<<20 + 5, 100 << 20}
	for _, name := range []string{"paid-small", "price-high-bit", "free-explore-all", "paid-attofil"} {
		p := byName[name]
		for _, f := range funds {
			for _, s := range sents {
				for _, fin := range []bool{false, true} {
					out.Intervals = append(out.Intervals, Interval{name, f.String(), s, fin,
						p.OutstandingBalance(f, s, fin).String(), p.NextInterval(f), lowerBound(p, s)})
				}
			}
		}
	}

	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", " ")
	enc.SetEscapeHTML(false)
	check(enc.Encode(out))
}

// lowerBound is Params.IntervalLowerBound, which never returns for a zero
// interval with no increase: 0 stands for that case here.
func lowerBound(p rt.Params, sent uint64) uint64 {
	if p.PaymentInterval == 0 && p.PaymentIntervalIncrease == 0 {
		return 0
	}
	return p.IntervalLowerBound(sent)
}

func emptyList() datamodel.Node {
	nb := basicnode.Prototype.List.NewBuilder()
	la := must(nb.BeginList(0))
	check(la.Finish())
	return nb.Build()
}
