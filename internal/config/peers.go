package config

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// This file is PgBouncer 1.19's peering: instances behind one load
// balancer forward each other the cancel requests that reached the wrong
// one. [proxy] peer_id names this instance; the [peers.<id>] tables (the
// ini's [peers] section, "1 = host=10.0.0.5 port=6432") say where the
// others listen for clients. Not to be confused with [proxy] peers, the
// admin consoles the operator commands pause together.

// MaxPeerID is the largest peer_id: PgBouncer's bound, the id travelling in
// 14 bits of the cancel key's PID part (see internal/router/peers.go).
const MaxPeerID = 16383

// Peer is one [peers.<id>] table: another instance, by its peer_id.
type Peer struct {
	ID int
	// Host is host: an address or name, or a Unix socket directory when
	// it starts with "/" (the socket is <Host>/.s.PGSQL.<Port>).
	Host string
	Port int // port, default 6432
}

// peerFields are the keys of a [peers.<id>] table.
var peerFields = []field[Peer]{
	{"host", func(p *Peer) any { return &p.Host }},
	{"port", func(p *Peer) any { return &p.Port }},
}

// validatePeering checks peer_id against the [peers.<id>] tables (also
// after a SET peer_id on the console).
func (b *builder) validatePeering(c *Config) {
	p := &c.Proxy
	if p.PeerID < 0 || p.PeerID > MaxPeerID {
		b.problem(b.px("peer_id"), "must be 0 (peering off) to %d, got %d", MaxPeerID, p.PeerID)
	}
	if len(c.CancelPeers) > 0 && p.PeerID == 0 {
		b.warn("peers", "used only with peer_id set: cancel requests are not forwarded")
	}
}

// peers types and checks the [peers.<id>] tables.
func (b *builder) peers(tables map[string]map[string]any) map[int]*Peer {
	if len(tables) == 0 {
		return nil
	}
	out := make(map[int]*Peer, len(tables))
	for _, name := range sortedKeys(tables) {
		prefix := []string{"peers", name}
		id, err := strconv.Atoi(name)
		if err != nil || id < 1 || id > MaxPeerID || strconv.Itoa(id) != name {
			b.problem(keyOf(prefix), "want a peer_id 1 to %d as the name", MaxPeerID)
			continue
		}
		peer := Peer{ID: id, Port: 6432}
		set := decodeTable(b, prefix, tables[name], peerFields, &peer)
		if !set["host"] || peer.Host == "" {
			b.problem(keyOf(prefix, "host"), "must be set: the address where peer %d listens for clients", id)
		} else if !strings.HasPrefix(peer.Host, "/") && !validHost(peer.Host) {
			b.problem(keyOf(prefix, "host"), "want one IP address, host name or Unix socket directory, got %q", peer.Host)
		}
		b.port(keyOf(prefix, "port"), peer.Port)
		out[id] = &peer
	}
	return out
}

// peer converts one line of an ini's [peers] section.
func (r *iniReader) peer(e iniEntry) {
	key := iniKey(e)
	params, err := ParseINIConnString(e.value)
	if err != nil {
		r.problem(e.file, key, "%v", err)
		return
	}
	t := map[string]any{}
	r.src.origin[key] = e.file
	for _, k := range sortedKeys(params) {
		pkey := keyOf([]string{"peers", e.key}, k)
		r.src.origin[pkey] = e.file
		switch k {
		case "host":
			t[k] = params[k]
		case "port":
			n, problem := iniValue(new(int), params[k])
			if problem != "" {
				r.problem(e.file, pkey, "%s", problem)
				continue
			}
			t[k] = n
		case "pool_size":
			r.warn(e.file, pkey, "ignored: pauseproxy opens one connection per forwarded cancel request")
		default:
			r.problem(e.file, pkey, "unknown key (want host, port)")
		}
	}
	if r.src.peers == nil {
		r.src.peers = map[string]map[string]any{}
	}
	r.src.peers[e.key] = t
}

// writePeers writes the [peers.<id>] tables for ToTOML.
func writePeers(w *strings.Builder, peers map[int]*Peer) {
	ids := make([]int, 0, len(peers))
	for id := range peers {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		fmt.Fprintf(w, "\n[peers.%d]\n", id)
		writeFields(w, peerFields, peers[id], &Peer{Port: 6432}, nil)
	}
}
