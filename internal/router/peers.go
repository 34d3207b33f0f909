package router

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/config"
	"github.com/pauseproxy/pauseproxy/internal/wire"
)

// Cancel requests across instances, as PgBouncer 1.19+ peering does them
// (its objects.c and client.c): behind one load balancer, a client's
// CancelRequest opens a new connection that may reach another instance
// than the one running its query. With peer_id set, every cancel key this
// instance hands out carries its id, and an instance that receives a key
// carrying another id forwards the request to that peer's [peers.<id>]
// address instead of looking it up.
//
// The layout is PgBouncer's, so that both can peer with each other: the
// 8-byte key as sent in BackendKeyData (4 bytes "process ID", 4 bytes
// secret, big-endian) has the peer id in its 2nd (low 8 bits) and 3rd
// (high 6 bits) bytes, and a TTL in the low 2 bits of its last byte, set
// to 3 when handed out and decremented at each forwarding, so that
// peers configured in a loop drop a request after three hops. The first
// byte's sign bit stays clear (a positive PID). That leaves 45 random
// bits per key.

// cancelTTLMask is PgBouncer's CANCELLATION_TTL_MASK: the TTL bits of the
// secret's last byte.
const cancelTTLMask = 0x03

// peerCancelTimeout bounds a forwarded cancel request: dialing the peer,
// and waiting for it to close once the cancel reached its server.
const peerCancelTimeout = 5 * time.Second

// withPeer stamps peer id into k (see the file comment); 0 leaves k alone.
func withPeer(k CancelKey, id int) CancelKey {
	if id == 0 {
		return k
	}
	k.PID = k.PID&^0x00ffff00 | uint32(id&0xff)<<16 | uint32(id>>8&0xff)<<8
	k.Secret |= cancelTTLMask
	return k
}

// keyPeer is the peer id a key carries.
func keyPeer(k CancelKey) int {
	return int(k.PID>>16&0xff) | int(k.PID>>8&0xff)<<8
}

// stampPeer gives a new cancel key this instance's peer_id.
func (r *Router) stampPeer(k CancelKey) CancelKey {
	return withPeer(k, r.cfg().PeerID)
}

// routeCancel decides where a cancel request goes. A key of this instance
// comes back with its TTL bits as handed out, to be looked up here; a key
// of another peer is forwarded there (or dropped, when its TTL is spent
// or the peer is unknown), and forwarded is true.
func (r *Router) routeCancel(k CancelKey) (_ CancelKey, forwarded bool) {
	cfg := r.conf.Load()
	own := cfg.Proxy.PeerID
	if own == 0 {
		return k, false
	}
	id := keyPeer(k)
	if id == own {
		k.Secret |= cancelTTLMask
		return k, false
	}
	if k.Secret&cancelTTLMask == 0 {
		r.log.Info("cancel request dropped: forwarded too many times", slog.Int("peer_id", id))
		return k, true
	}
	k.Secret-- // one hop less, in the TTL bits
	peer := cfg.CancelPeers[id]
	if peer == nil {
		r.log.Info("cancel request dropped: its key belongs to no configured peer", slog.Int("peer_id", id))
		return k, true
	}
	if err := forwardCancel(peer, k); err != nil {
		r.log.Warn("cancel request forwarding failed", slog.Int("peer_id", id), slog.Any("err", err))
	}
	return k, true
}

// forwardCancel sends k as a CancelRequest to peer and waits until the
// peer closes the connection: it does so once the cancel has reached its
// server, and only then may the requester's connection be closed (see
// serveConn in internal/proxy).
func forwardCancel(peer *config.Peer, k CancelKey) error {
	network, addr := "tcp", net.JoinHostPort(peer.Host, strconv.Itoa(peer.Port))
	if strings.HasPrefix(peer.Host, "/") {
		network, addr = "unix", filepath.Join(peer.Host, ".s.PGSQL."+strconv.Itoa(peer.Port))
	}
	d := net.Dialer{Timeout: peerCancelTimeout}
	nc, err := d.Dial(network, addr)
	if err != nil {
		return fmt.Errorf("dial peer %d at %s: %w", peer.ID, addr, err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(peerCancelTimeout))
	var secret [4]byte
	binary.BigEndian.PutUint32(secret[:], k.Secret)
	if _, err := nc.Write(wire.AppendCancelRequest(nil, k.PID, secret[:])); err != nil {
		return fmt.Errorf("send to peer %d at %s: %w", peer.ID, addr, err)
	}
	var b [1]byte
	nc.Read(b[:]) // the peer answers nothing: wait for its close
	return nil
}
