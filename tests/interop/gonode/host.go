package main

// The libp2p host is assembled from its parts (swarm, upgrader, TCP, Noise,
// Yamux) instead of with go-libp2p's root package: that package imports an
// old quic-go that does not compile with Go >= 1.20, and TCP + Noise + Yamux
// is exactly what py-data-transfer speaks, so nothing else is wanted.

import (
	"crypto/rand"
	"sync"

	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	basichost "github.com/libp2p/go-libp2p/p2p/host/basic"
	"github.com/libp2p/go-libp2p/p2p/host/peerstore/pstoremem"
	msmux "github.com/libp2p/go-libp2p/p2p/muxer/muxer-multistream"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	csms "github.com/libp2p/go-libp2p/p2p/net/conn-security-multistream"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	"github.com/libp2p/go-libp2p/p2p/net/upgrader"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
)

// dialGater restricts the addresses this node dials a peer at to the one it
// was told (-only-via): identify announces the peer's real listen address,
// and a reconnection there would go around the relay a test put in between.
// Peers without an entry are dialed anywhere.
type dialGater struct {
	mu   sync.Mutex
	only map[peer.ID]ma.Multiaddr
}

func newDialGater() *dialGater { return &dialGater{only: map[peer.ID]ma.Multiaddr{}} }

func (g *dialGater) dialOnlyAt(p peer.ID, addr ma.Multiaddr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.only[p] = addr
}

func (g *dialGater) InterceptPeerDial(peer.ID) bool { return true }

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
	pid, err := peer.IDFromPrivateKey(priv)
	if err != nil {
		return nil, err
	}
	ps, err := pstoremem.NewPeerstore()
	if err != nil {
		return nil, err
	}
	if err := ps.AddPrivKey(pid, priv); err != nil {
		return nil, err
	}
	if err := ps.AddPubKey(pid, priv.GetPublic()); err != nil {
		return nil, err
	}
	rcmgr := network.NullResourceManager
	sw, err := swarm.NewSwarm(pid, ps, swarm.WithResourceManager(rcmgr), swarm.WithConnectionGater(gater))
	if err != nil {
		return nil, err
	}
	nz, err := noise.New(priv)
	if err != nil {
		return nil, err
	}
	secMuxer := new(csms.SSMuxer)
	secMuxer.AddTransport(noise.ID, nz)
	muxer := msmux.NewBlankTransport()
	muxer.AddTransport("/yamux/1.0.0", yamux.DefaultTransport)
	up, err := upgrader.New(secMuxer, muxer, upgrader.WithResourceManager(rcmgr))
	if err != nil {
		return nil, err
	}
	t, err := tcp.NewTCPTransport(up, rcmgr)
	if err != nil {
		return nil, err
	}
	if err := sw.AddTransport(t); err != nil {
		return nil, err
	}
	addr, err := ma.NewMultiaddr(listen)
	if err != nil {
		return nil, err
	}
	if err := sw.Listen(addr); err != nil {
		return nil, err
	}
	h, err := basichost.NewHost(sw, &basichost.HostOpts{})
	if err != nil {
		return nil, err
	}
	h.Start()
	return h, nil
}
