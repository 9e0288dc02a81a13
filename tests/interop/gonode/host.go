package main

// The libp2p host is assembled from its parts (swarm, upgrader, TCP, Noise,
// Yamux) instead of with go-libp2p's root package: that package imports an
// old quic-go that does not compile with Go >= 1.20, and TCP + Noise + Yamux
// is exactly what py-data-transfer speaks, so nothing else is wanted.

import (
	"crypto/rand"

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

// makeHost starts a host with a fresh Ed25519 identity listening on listen.
// The resource manager is the null one: the tests open a handful of streams
// and limits would only make failures harder to read.
func makeHost(listen string) (host.Host, error) {
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
	sw, err := swarm.NewSwarm(pid, ps, swarm.WithResourceManager(rcmgr))
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
