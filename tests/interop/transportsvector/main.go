// Command transportsvector writes tests/data/transports-vectors.json: the
// QueryResponse of the retrieval transports protocol
// (/fil/retrieval/transports/1.0.0) as Go's IPLD binding encodes it
// (bindnode + dagcbor.Encode, the schema and multiaddr converter of Lassie
// v0.25.0 and boost), and Go's verdict on malformed responses.
package main

import (
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"

	"github.com/ipld/go-ipld-prime/codec/dagcbor"
	"github.com/ipld/go-ipld-prime/node/bindnode"
	bindnoderegistry "github.com/ipld/go-ipld-prime/node/bindnode/registry"
	"github.com/multiformats/go-multiaddr"
)

type Protocol struct {
	Name      string
	Addresses []multiaddr.Multiaddr
}

type QueryResponse struct {
	Protocols []Protocol
}

//go:embed types.ipldsch
var schema []byte

var registry = bindnoderegistry.NewRegistry()

func init() {
	var dummy multiaddr.Multiaddr
	fromBytes := func(b []byte) (interface{}, error) {
		ma, err := multiaddr.NewMultiaddrBytes(b)
		if err != nil {
			return nil, err
		}
		return &ma, nil
	}
	toBytes := func(v interface{}) ([]byte, error) {
		ma, ok := v.(*multiaddr.Multiaddr)
		if !ok {
			return nil, fmt.Errorf("expected *Multiaddr value")
		}
		return (*ma).Bytes(), nil
	}
	if err := registry.RegisterType((*QueryResponse)(nil), string(schema), "QueryResponse",
		bindnode.TypedBytesConverter(&dummy, fromBytes, toBytes)); err != nil {
		panic(err)
	}
}

type jsonProtocol struct {
	Name      string   `json:"name"`
	Addresses []string `json:"addresses"`
}

type vector struct {
	Name      string         `json:"name"`
	Protocols []jsonProtocol `json:"protocols"`
	DagCBOR   string         `json:"dagcbor"`
}

type malformed struct {
	Name    string `json:"name"`
	DagCBOR string `json:"dagcbor"`
	GoError string `json:"go_error"`
}

func encode(name string, protos []jsonProtocol) vector {
	resp := QueryResponse{Protocols: []Protocol{}}
	for _, p := range protos {
		addrs := []multiaddr.Multiaddr{}
		for _, a := range p.Addresses {
			addrs = append(addrs, multiaddr.StringCast(a))
		}
		resp.Protocols = append(resp.Protocols, Protocol{Name: p.Name, Addresses: addrs})
	}
	data, err := registry.TypeToBytes(&resp, dagcbor.Encode)
	if err != nil {
		panic(err)
	}
	// Go reads back what it wrote, the addresses in their text form
	back := decode(data)
	if back != "" {
		panic(back)
	}
	return vector{Name: name, Protocols: protos, DagCBOR: hex.EncodeToString(data)}
}

func decode(data []byte) string {
	_, err := registry.TypeFromBytes(data, (*QueryResponse)(nil), dagcbor.Decode)
	if err != nil {
		return err.Error()
	}
	return ""
}

func bad(name, hexdata string) malformed {
	data, err := hex.DecodeString(hexdata)
	if err != nil {
		panic(err)
	}
	return malformed{Name: name, DagCBOR: hexdata, GoError: decode(data)}
}

const peer = "12D3KooWEASbVQwP87bV3UvGMAquexeKwGGrxNvLbtUCvaH7yhKV"

func main() {
	vectors := []vector{
		encode("no protocols", []jsonProtocol{}),
		encode("libp2p, one address", []jsonProtocol{
			{Name: "libp2p", Addresses: []string{"/ip4/127.0.0.1/tcp/4001/p2p/" + peer}},
		}),
		encode("libp2p, two addresses", []jsonProtocol{
			{Name: "libp2p", Addresses: []string{
				"/ip4/192.0.2.7/tcp/24001/p2p/" + peer,
				"/ip6/::1/tcp/24001/p2p/" + peer,
			}},
		}),
		encode("libp2p and http, as boost", []jsonProtocol{
			{Name: "libp2p", Addresses: []string{"/ip4/192.0.2.7/tcp/24001/p2p/" + peer}},
			{Name: "http", Addresses: []string{"/dns/example.com/tcp/443/https"}},
		}),
		encode("a protocol without addresses", []jsonProtocol{
			{Name: "bitswap", Addresses: []string{}},
		}),
	}
	// hand-made DAG-CBOR: {"Protocols": [ <protocol> ]}
	protocols := "a1" + "6950726f746f636f6c73" // map(1) "Protocols"
	name := "644e616d65" + "666c6962703270"    // "Name": "libp2p"
	addresses := "69416464726573736573"        // "Addresses"
	addr := "48" + "0401020304060fa1"          // bytes(8): /ip4/1.2.3.4/tcp/4001
	malformedCases := []malformed{
		bad("well-formed (the baseline the others edit)", protocols+"81a2"+name+addresses+"81"+addr),
		bad("not a map", "80"),
		bad("Protocols missing", "a0"),
		bad("Protocols not a list", protocols+"a0"),
		bad("a protocol not a map", protocols+"8101"),
		bad("Name missing", protocols+"81a1"+addresses+"81"+addr),
		bad("Addresses missing", protocols+"81a1"+name),
		bad("an unknown field", protocols+"81a3"+name+addresses+"81"+addr+"654578747261f5"),
		bad("Name not a string", protocols+"81a2644e616d6501"+addresses+"81"+addr),
		bad("Addresses not a list", protocols+"81a2"+name+addresses+addr),
		bad("an address not bytes", protocols+"81a2"+name+addresses+"8101"),
		bad("an address that is not a multiaddr", protocols+"81a2"+name+addresses+"8143ffffff"),
		bad("an empty address", protocols+"81a2"+name+addresses+"8140"),
		bad("keys in another order", protocols+"81a2"+addresses+"81"+addr+name),
		bad("trailing bytes", protocols+"81a2"+name+addresses+"81"+addr+"00"),
	}
	out := map[string]interface{}{"vectors": vectors, "malformed": malformedCases}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		panic(err)
	}
}
