package router

import (
	"encoding/binary"
	"testing"
)

// The peer id sits where PgBouncer puts it in the 8 key bytes sent in
// BackendKeyData: cancel_key[1] = id & 0xff, cancel_key[2] = id >> 8, the
// TTL bits of cancel_key[7] set, cancel_key[0]'s sign bit clear.
func TestCancelKeyPeerLayout(t *testing.T) {
	for _, id := range []int{1, 2, 255, 256, 4660, 16383} {
		for _, k := range []CancelKey{{PID: 0x7fffffff, Secret: 0xfffffffc}, {PID: 0x12345678, Secret: 0}, {PID: 1, Secret: 1}} {
			got := withPeer(k, id)
			var b [8]byte
			binary.BigEndian.PutUint32(b[:4], got.PID)
			binary.BigEndian.PutUint32(b[4:], got.Secret)
			if int(b[1])|int(b[2])<<8 != id || b[7]&cancelTTLMask != cancelTTLMask || b[0]&0x80 != 0 || keyPeer(got) != id {
				t.Errorf("withPeer(%+v, %d) = % x", k, id, b)
			}
			if b[0] != byte(k.PID>>24) || b[3] != byte(k.PID) || got.Secret|cancelTTLMask != k.Secret|cancelTTLMask {
				t.Errorf("withPeer(%+v, %d) = % x changed random bits", k, id, b)
			}
		}
	}
	if k := (CancelKey{PID: 5, Secret: 6}); withPeer(k, 0) != k {
		t.Error("peer_id 0 changed the key")
	}
}
