package main

// The libp2p host: TCP + Noise + Yamux only, which is what py-data-transfer
// speaks (go-libp2p v0.43 builds with a current Go, so its constructor is
// used here, unlike in gonode).

import (
	"crypto/rand"
	"sync"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
)

// dialGater restricts the addresses this node dials a peer at to the one it
// was told (-only-via): identify announces the peer's real listen address,
// and a reconnection there would go around the relay a test put in between.
// Peers without an entry are dialed anywhere. With noDial (serve -no-dial)
// the node dials no one: it answers on the connections peers open, so that
// go-graphsync cannot redial a peer around a relay after a cut.
type dialGater struct {
	mu     sync.Mutex
	only   map[peer.ID]ma.Multiaddr
	noDial bool
}

func newDialGater() *dialGater { return &dialGater{only: map[peer.ID]ma.Multiaddr{}} }

func (g *dialGater) dialOnlyAt(p peer.ID, addr ma.Multiaddr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.only[p] = addr
}

func (g *dialGater) dialNoOne() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.noDial = true
}

func (g *dialGater) InterceptPeerDial(peer.ID) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return !g.noDial
}

func (g *dialGater) InterceptAddrDial(p peer.ID, addr ma.Multiaddr) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	only, ok := g.only[p]
	return !ok || only.Equal(addr)
}

func (g *dialGater) InterceptAccept(network.ConnMultiaddrs) bool { return true }

func (g *dialGater) InterceptSecured(network.Direction, peer.ID, network.ConnMultiaddrs) bool {
	return true
}

func (g *dialGater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) {
	return true, 0
}

// makeHost starts a host with a fresh Ed25519 identity listening on listen.
// The resource manager is the null one: the tests open a handful of streams
// and limits would only make failures harder to read.
func makeHost(listen string, gater *dialGater) (host.Host, error) {
	priv, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, err
	}
	return libp2p.New(
		libp2p.Identity(priv),
		libp2p.ListenAddrStrings(listen),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.ConnectionGater(gater),
		libp2p.ResourceManager(&network.NullResourceManager{}),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
		libp2p.Ping(false),
	)
}
