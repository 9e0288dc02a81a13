// Command gonode2 is a go-data-transfer v2.0.0 + go-graphsync v0.18.0 node
// (the versions Lassie and boost run) that tests/test_interop_go2.py runs
// against py-data-transfer, next to gonode (v1.15). It is gonode ported to
// v2's API: the same commands, flags and stdout records, so that the tests
// read both alike. What differs is the API, not the wire: v2 registers a
// voucher type by name (TypeIdentifier) with a validator that sees the
// voucher as an IPLD node, and answers with a ValidationResult.
//
//	gonode2 serve [-listen MA] [-file F -profile classic|modern] [-out DIR] [-block-delay D]
//	              [-no-dial=true]
//	gonode2 pull  MADDR CID [-out FILE] [-selector JSON]
//	              [-pause-after N -pause-for D | -cancel-after N] [-linger D]
//	              [-restart-backoff D -only-via=true]
//	gonode2 push  MADDR -file F [-profile classic|modern] [-selector JSON]
//
// Like tests/_procnode.py it prints one record per stdout line, "WORD args":
//
//	ADDR <multiaddr with /p2p/>          first, once the host listens
//	ROOT <cid>                           serve -file, push: the imported root
//	STATE <chid> <status> <sent> <recv>  whenever a channel's status changes
//	EVENT <Pause|Resume><Initiator|Responder> <chid> <sent> <recv>
//	                                     a pause or resume (v2 flags it; the status stays)
//	PAUSED|RESUMED|CANCELLED <chid> <recv> <sent>   -pause-after/-cancel-after acted
//	DONE <status> <sent> <recv>          pull, push: the channel's final state
//	MESSAGE <text>                       after DONE, when the channel says why
//	RESTARTED <chid>                     -restart-backoff: the monitor restarted a channel
//	FILE <size> <sha256>                 pull, completed, whole DAG: the file bytes
//	RECEIVED <cid> <size> <sha256>       serve -out: a completed push, exported
//	VOUCHER <pull|push> <type> <note>    a request's voucher, as validated (note: spaces as _)
//	ERROR <text>                         then exit 1 (bad arguments, timeout...)
//
// Every data-transfer event goes to stderr as "[dt] ..." (the test shows it
// when an assertion fails); GOLOG_LOG_LEVEL=debug adds the libraries' logs.
// serve runs until stdin closes or a signal arrives.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	datatransfer "github.com/filecoin-project/go-data-transfer/v2"
	"github.com/filecoin-project/go-data-transfer/v2/channelmonitor"
	dtimpl "github.com/filecoin-project/go-data-transfer/v2/impl"
	dtnet "github.com/filecoin-project/go-data-transfer/v2/network"
	gstransport "github.com/filecoin-project/go-data-transfer/v2/transport/graphsync"
	"github.com/ipfs/boxo/blockservice"
	bstore "github.com/ipfs/boxo/blockstore"
	chunker "github.com/ipfs/boxo/chunker"
	offline "github.com/ipfs/boxo/exchange/offline"
	files "github.com/ipfs/boxo/files"
	"github.com/ipfs/boxo/ipld/merkledag"
	unixfile "github.com/ipfs/boxo/ipld/unixfs/file"
	"github.com/ipfs/boxo/ipld/unixfs/importer/balanced"
	ihelper "github.com/ipfs/boxo/ipld/unixfs/importer/helpers"
	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/namespace"
	dss "github.com/ipfs/go-datastore/sync"
	"github.com/ipfs/go-graphsync"
	gsimpl "github.com/ipfs/go-graphsync/impl"
	gsnet "github.com/ipfs/go-graphsync/network"
	"github.com/ipfs/go-graphsync/storeutil"
	ipldformat "github.com/ipfs/go-ipld-format"
	logging "github.com/ipfs/go-log/v2"
	"github.com/ipld/go-ipld-prime/datamodel"
	"github.com/ipld/go-ipld-prime/fluent/qp"
	basicnode "github.com/ipld/go-ipld-prime/node/basic"
	selectorparse "github.com/ipld/go-ipld-prime/traversal/selector/parse"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	mh "github.com/multiformats/go-multihash"
)

var log = logging.Logger("gonode2")

// sayMu keeps stdout records whole: data-transfer events arrive on the
// library's goroutines while main prints too.
var sayMu sync.Mutex

func say(words ...interface{}) {
	sayMu.Lock()
	defer sayMu.Unlock()
	fmt.Fprintln(os.Stdout, words...)
}

// openVoucherType is py-data-transfer's default voucher type
// (datatransfer.node.OpenVoucher), DAG-CBOR {"Note": <string>}. Registering
// the same type on both sides is what lets either node open channels to the
// other; in v2 a voucher is an IPLD node named by its type, so no Go type
// stands for it.
const openVoucherType = datatransfer.TypeIdentifier("py-data-transfer/open")

// openVoucher builds the voucher this node sends: {"Note": note}.
func openVoucher(note string) datatransfer.TypedVoucher {
	nd, err := qp.BuildMap(basicnode.Prototype.Map, 1, func(ma datamodel.MapAssembler) {
		qp.MapEntry(ma, "Note", qp.String(note))
	})
	if err != nil {
		panic(err) // a fixed one-entry map: cannot fail
	}
	return datatransfer.TypedVoucher{Voucher: nd, Type: openVoucherType}
}

// voucherNote reads the voucher's Note; an absent note is allowed, as on
// the Python side, anything else is refused with the reason.
func voucherNote(voucher datamodel.Node) (string, error) {
	if voucher == nil || voucher.Kind() != datamodel.Kind_Map {
		return "", fmt.Errorf("bad open voucher: not a map")
	}
	note, err := voucher.LookupByString("Note")
	if err != nil {
		return "", nil
	}
	s, err := note.AsString()
	if err != nil {
		return "", fmt.Errorf("bad open voucher: Note is not a string: %w", err)
	}
	return s, nil
}

// acceptAll validates every well-formed request, as the Python node's
// OpenValidator does: the tests are about the protocol, not about policy.
type acceptAll struct{}

func (acceptAll) validate(what string, chid datatransfer.ChannelID, other peer.ID, voucher datamodel.Node, baseCid cid.Cid) (datatransfer.ValidationResult, error) {
	note, err := voucherNote(voucher)
	if err != nil {
		return datatransfer.ValidationResult{}, err
	}
	log.Infof("validate %s %s with %s root %s", what, chid, other, baseCid)
	say("VOUCHER", what, openVoucherType, strings.ReplaceAll(note, " ", "_"))
	return datatransfer.ValidationResult{Accepted: true}, nil
}

func (v acceptAll) ValidatePush(chid datatransfer.ChannelID, sender peer.ID, voucher datamodel.Node, baseCid cid.Cid, selector datamodel.Node) (datatransfer.ValidationResult, error) {
	return v.validate("push", chid, sender, voucher, baseCid)
}

func (v acceptAll) ValidatePull(chid datatransfer.ChannelID, receiver peer.ID, voucher datamodel.Node, baseCid cid.Cid, selector datamodel.Node) (datatransfer.ValidationResult, error) {
	return v.validate("pull", chid, receiver, voucher, baseCid)
}

func (acceptAll) ValidateRestart(chid datatransfer.ChannelID, channel datatransfer.ChannelState) (datatransfer.ValidationResult, error) {
	log.Infof("validate restart %s", chid)
	return datatransfer.ValidationResult{Accepted: true}, nil
}

type node struct {
	h     host.Host
	gater *dialGater
	dag   ipldformat.DAGService
	dt    datatransfer.Manager
	done  chan datatransfer.ChannelState

	mu       sync.Mutex
	status   map[datatransfer.ChannelID]datatransfer.Status
	finished map[datatransfer.ChannelID]bool
	// act runs once, on its own goroutine, when a channel first moved
	// actAfter bytes (-pause-after / -cancel-after).
	actAfter uint64
	act      func(st datatransfer.ChannelState)
	acted    bool
}

// monitorConfig turns go-data-transfer's channel monitor on (it is off
// unless configured): after a data error (the connection died) it
// reconnects and restarts the channel, waiting restartBackoff between
// attempts. The timeouts are short so that a broken restart fails the test
// instead of hanging it.
func monitorConfig(restartBackoff time.Duration) dtimpl.DataTransferOption {
	return dtimpl.ChannelRestartConfig(channelmonitor.Config{
		AcceptTimeout:          30 * time.Second,
		RestartDebounce:        100 * time.Millisecond,
		RestartBackoff:         restartBackoff,
		MaxConsecutiveRestarts: 5,
		CompleteTimeout:        30 * time.Second,
		OnRestartComplete: func(chid datatransfer.ChannelID) {
			say("RESTARTED", chid)
		},
	})
}

func newNode(ctx context.Context, listen string, blockDelay, restartBackoff time.Duration) (*node, error) {
	gater := newDialGater()
	h, err := makeHost(listen, gater)
	if err != nil {
		return nil, err
	}
	// Everything in memory: each run starts empty, nothing to clean up.
	ds := dss.MutexWrap(datastore.NewMapDatastore())
	bs := bstore.NewBlockstore(namespace.Wrap(ds, datastore.NewKey("blockstore")))
	dag := merkledag.NewDAGService(blockservice.New(bs, offline.Exchange(bs)))
	gs := gsimpl.New(ctx, gsnet.NewFromLibp2pHost(h), storeutil.LinkSystemForBlockstore(bs))
	if blockDelay > 0 {
		// A slow responder: the hook runs on the goroutine that walks the
		// DAG, so sleeping there paces every block this node sends.
		gs.RegisterOutgoingBlockHook(func(peer.ID, graphsync.RequestData, graphsync.BlockData, graphsync.OutgoingBlockHookActions) {
			time.Sleep(blockDelay)
		})
	}
	tp := gstransport.NewTransport(h.ID(), gs)
	var opts []dtimpl.DataTransferOption
	if restartBackoff > 0 {
		opts = append(opts, monitorConfig(restartBackoff))
	}
	dt, err := dtimpl.NewDataTransfer(namespace.Wrap(ds, datastore.NewKey("datatransfer")), dtnet.NewFromLibp2pHost(h), tp, opts...)
	if err != nil {
		return nil, err
	}
	if err := dt.RegisterVoucherType(openVoucherType, acceptAll{}); err != nil {
		return nil, err
	}
	n := &node{
		h: h, gater: gater, dag: dag, dt: dt,
		done:     make(chan datatransfer.ChannelState, 64),
		status:   map[datatransfer.ChannelID]datatransfer.Status{},
		finished: map[datatransfer.ChannelID]bool{},
	}
	dt.SubscribeToEvents(n.onEvent)
	ready := make(chan error, 1)
	dt.OnReady(func(err error) { ready <- err })
	if err := dt.Start(ctx); err != nil {
		return nil, err
	}
	if err := <-ready; err != nil {
		return nil, err
	}
	return n, nil
}

func (n *node) onEvent(ev datatransfer.Event, st datatransfer.ChannelState) {
	chid := st.ChannelID()
	fmt.Fprintf(os.Stderr, "[dt] %s event=%s status=%s sent=%d recv=%d msg=%q\n",
		chid, datatransfer.Events[ev.Code], datatransfer.Statuses[st.Status()],
		st.Sent(), st.Received(), ev.Message)
	n.mu.Lock()
	defer n.mu.Unlock()
	switch ev.Code {
	case datatransfer.PauseInitiator, datatransfer.ResumeInitiator,
		datatransfer.PauseResponder, datatransfer.ResumeResponder:
		// v2 keeps the status (Ongoing) and flags the pause instead
		say("EVENT", datatransfer.Events[ev.Code], chid, st.Sent(), st.Received())
	}
	if last, ok := n.status[chid]; !ok || last != st.Status() {
		n.status[chid] = st.Status()
		say("STATE", chid, datatransfer.Statuses[st.Status()], st.Sent(), st.Received())
	}
	moved := st.Received()
	if st.Sent() > moved {
		moved = st.Sent()
	}
	if n.act != nil && !n.acted && moved > 0 && moved >= n.actAfter {
		n.acted = true
		go n.act(st)
	}
	switch st.Status() {
	case datatransfer.Completed, datatransfer.Failed, datatransfer.Cancelled:
		if !n.finished[chid] {
			n.finished[chid] = true
			n.done <- st
		}
	}
}

func (n *node) addr() string {
	for _, a := range n.h.Addrs() {
		return fmt.Sprintf("%s/p2p/%s", a, n.h.ID())
	}
	return ""
}

// importFile builds the same UnixFS DAG as `datatransfer add --profile`, so
// both nodes name a file by the same root CID.
func (n *node) importFile(ctx context.Context, path, profile string) (cid.Cid, error) {
	f, err := os.Open(path)
	if err != nil {
		return cid.Undef, err
	}
	defer f.Close()
	buffered := ipldformat.NewBufferedDAG(ctx, n.dag)
	params := ihelper.DagBuilderParams{Dagserv: buffered}
	var chunkSize int64
	switch profile {
	case "classic": // go-ipfs defaults: CIDv0, dag-pb leaves
		params.Maxlinks = 174
		params.CidBuilder = merkledag.V0CidPrefix()
		chunkSize = 256 * 1024
	case "modern": // CIDv1, raw leaves, bigger chunks and fan-out
		params.Maxlinks = 1024
		params.RawLeaves = true
		pfx := merkledag.V1CidPrefix()
		pfx.MhType = mh.SHA2_256
		params.CidBuilder = pfx
		chunkSize = 1024 * 1024
	default:
		return cid.Undef, fmt.Errorf("unknown profile %q", profile)
	}
	db, err := params.New(chunker.NewSizeSplitter(files.NewReaderFile(f), chunkSize))
	if err != nil {
		return cid.Undef, err
	}
	nd, err := balanced.Layout(db)
	if err != nil {
		return cid.Undef, err
	}
	if err := buffered.Commit(); err != nil {
		return cid.Undef, err
	}
	return nd.Cid(), nil
}

// exportFile reads the UnixFS file under root back from the block store: the
// bytes a transfer delivered, for the test to compare with its source file.
func (n *node) exportFile(ctx context.Context, root cid.Cid, out string) (int, string, error) {
	nd, err := n.dag.Get(ctx, root)
	if err != nil {
		return 0, "", err
	}
	fn, err := unixfile.NewUnixfsFile(ctx, n.dag, nd)
	if err != nil {
		return 0, "", err
	}
	file, ok := fn.(files.File)
	if !ok {
		return 0, "", fmt.Errorf("%s is not a UnixFS file", root)
	}
	data, err := io.ReadAll(file)
	if err != nil {
		return 0, "", err
	}
	sum := sha256.Sum256(data)
	if out != "" {
		if err := os.WriteFile(out, data, 0o644); err != nil {
			return 0, "", err
		}
	}
	return len(data), hex.EncodeToString(sum[:]), nil
}

func (n *node) connect(ctx context.Context, maddr string, onlyVia bool) (peer.ID, error) {
	ai, err := peer.AddrInfoFromString(maddr)
	if err != nil {
		return "", err
	}
	if onlyVia && len(ai.Addrs) == 1 {
		n.gater.dialOnlyAt(ai.ID, ai.Addrs[0])
	}
	if err := n.h.Connect(ctx, *ai); err != nil {
		return "", err
	}
	// Connect keeps the address for a short while only, and once the
	// connection is gone the peerstore may have none left to dial: then the
	// channel monitor's reconnection fails with "no good addresses". The
	// address given is the one to reach the peer by (a relay, in the tests).
	n.h.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.PermanentAddrTTL)
	return ai.ID, nil
}

func (n *node) wait(timeout time.Duration) (datatransfer.ChannelState, error) {
	select {
	case st := <-n.done:
		return st, nil
	case <-time.After(timeout):
		return nil, fmt.Errorf("no final status after %s", timeout)
	}
}

func main() {
	if len(os.Args) < 2 {
		fail(fmt.Errorf("usage: gonode2 serve|pull|push ..."))
	}
	cmd := os.Args[1]
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	listen := fs.String("listen", "/ip4/127.0.0.1/tcp/0", "listen multiaddr")
	file := fs.String("file", "", "file to import (serve, push)")
	profile := fs.String("profile", "classic", "UnixFS profile of -file: classic|modern")
	out := fs.String("out", "", "pull: write the file here; serve: export completed pushes into this directory")
	sel := fs.String("selector", "", "selector as DAG-JSON (default: the whole DAG)")
	timeout := fs.Duration("timeout", 2*time.Minute, "pull, push: give up after this long")
	pauseAfter := fs.Uint64("pause-after", 0, "pull, push: pause the channel once it moved N bytes")
	pauseFor := fs.Duration("pause-for", 2*time.Second, "how long -pause-after keeps the channel paused")
	cancelAfter := fs.Uint64("cancel-after", 0, "pull, push: close (cancel) the channel once it moved N bytes")
	blockDelay := fs.Duration("block-delay", 0, "sleep this long after each block this node sends (a slow link)")
	restartBackoff := fs.Duration("restart-backoff", 0, "enable the channel monitor (restart a channel after a data error), this long between restarts; 0: off")
	onlyVia := fs.Bool("only-via", false, "pull, push: dial the peer at MADDR only, never at the addresses identify announced (give as -only-via=true)")
	noDial := fs.Bool("no-dial", false, "serve: never dial a peer, answer on the connections peers open (give as -no-dial=true)")
	linger := fs.Duration("linger", time.Second, "pull, push: keep the host up this long after the channel ended, so the last messages leave")
	_ = fs.Parse(reorder(os.Args[2:]))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	selector := selectorparse.CommonSelector_ExploreAllRecursively
	if *sel != "" {
		s, err := selectorparse.ParseJSONSelector(*sel)
		if err != nil {
			fail(fmt.Errorf("bad -selector: %w", err))
		}
		selector = s
	}
	n, err := newNode(ctx, *listen, *blockDelay, *restartBackoff)
	if err != nil {
		fail(err)
	}
	if *noDial {
		n.gater.dialNoOne()
	}
	say("ADDR", n.addr())
	if *pauseAfter > 0 {
		n.actAfter = *pauseAfter
		n.act = func(st datatransfer.ChannelState) {
			chid := st.ChannelID()
			if err := n.dt.PauseDataTransferChannel(ctx, chid); err != nil {
				fmt.Fprintf(os.Stderr, "pause failed: %v\n", err)
			}
			say("PAUSED", chid, st.Received(), st.Sent())
			time.Sleep(*pauseFor)
			if err := n.dt.ResumeDataTransferChannel(ctx, chid); err != nil {
				fmt.Fprintf(os.Stderr, "resume failed: %v\n", err)
			}
			now, err := n.dt.ChannelState(ctx, chid)
			if err == nil {
				say("RESUMED", chid, now.Received(), now.Sent())
			}
		}
	}
	if *cancelAfter > 0 {
		n.actAfter = *cancelAfter
		n.act = func(st datatransfer.ChannelState) {
			if err := n.dt.CloseDataTransferChannel(ctx, st.ChannelID()); err != nil {
				fmt.Fprintf(os.Stderr, "cancel failed: %v\n", err)
			}
			say("CANCELLED", st.ChannelID(), st.Received(), st.Sent())
		}
	}
	switch cmd {
	case "serve":
		serve(ctx, n, *file, *profile, *out)
	case "pull":
		args := fs.Args()
		if len(args) != 2 {
			fail(fmt.Errorf("usage: gonode2 pull MADDR CID [flags]"))
		}
		root, err := cid.Decode(args[1])
		if err != nil {
			fail(err)
		}
		p, err := n.connect(ctx, args[0], *onlyVia)
		if err != nil {
			fail(err)
		}
		if _, err := n.dt.OpenPullDataChannel(ctx, p, openVoucher("from gonode2"), root, selector); err != nil {
			fail(err)
		}
		st := finish(n, *timeout, *linger)
		if st.Status() == datatransfer.Completed && *sel == "" {
			size, sum, err := n.exportFile(ctx, root, *out)
			if err != nil {
				fail(err)
			}
			say("FILE", size, sum)
		}
	case "push":
		args := fs.Args()
		if len(args) != 1 || *file == "" {
			fail(fmt.Errorf("usage: gonode2 push MADDR -file F [flags]"))
		}
		root, err := n.importFile(ctx, *file, *profile)
		if err != nil {
			fail(err)
		}
		say("ROOT", root)
		p, err := n.connect(ctx, args[0], *onlyVia)
		if err != nil {
			fail(err)
		}
		if _, err := n.dt.OpenPushDataChannel(ctx, p, openVoucher("from gonode2"), root, selector); err != nil {
			fail(err)
		}
		finish(n, *timeout, *linger)
	default:
		fail(fmt.Errorf("unknown command %q (serve|pull|push)", cmd))
	}
}

// finish waits for the one channel this process opened to end and says DONE.
func finish(n *node, timeout, linger time.Duration) datatransfer.ChannelState {
	st, err := n.wait(timeout)
	if err != nil {
		fail(err)
	}
	time.Sleep(linger)
	say("DONE", datatransfer.Statuses[st.Status()], st.Sent(), st.Received())
	if msg := st.Message(); msg != "" {
		say("MESSAGE", strings.ReplaceAll(msg, "\n", " "))
	}
	return st
}

// serve answers pulls and accepts pushes until stdin closes or a signal
// arrives (the test closes stdin to stop it cleanly).
func serve(ctx context.Context, n *node, file, profile, out string) {
	if file != "" {
		root, err := n.importFile(ctx, file, profile)
		if err != nil {
			fail(err)
		}
		say("ROOT", root)
	}
	stop := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(stop)
	}()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	for {
		select {
		case <-stop:
			return
		case <-sigs:
			return
		case st := <-n.done:
			if st.Status() != datatransfer.Completed || st.Recipient() != n.h.ID() || out == "" {
				continue
			}
			p := filepath.Join(out, st.BaseCID().String())
			size, sum, err := n.exportFile(ctx, st.BaseCID(), p)
			if err != nil {
				fmt.Fprintf(os.Stderr, "export of %s failed: %v\n", st.BaseCID(), err)
				continue
			}
			say("RECEIVED", st.BaseCID(), size, sum)
		}
	}
}

// reorder moves flags before positional arguments, so that
// "pull MADDR CID -out F" parses (the flag package stops at the first
// positional argument). Every flag here takes a value except -h.
func reorder(args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if len(a) > 1 && a[0] == '-' {
			flags = append(flags, a)
			if i+1 < len(args) && !strings.Contains(a, "=") {
				flags = append(flags, args[i+1])
				i++
			}
		} else {
			pos = append(pos, a)
		}
	}
	return append(flags, pos...)
}

func fail(err error) {
	say("ERROR", strings.ReplaceAll(err.Error(), "\n", " "))
	os.Exit(1)
}
