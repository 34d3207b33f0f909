package wire

import (
	"errors"
	"sync"
)

// ErrBudgetExhausted is returned (wrapped in *FrameError) when a message
// larger than the reader's buffer does not fit the memory budget its
// readers share.
var ErrBudgetExhausted = errors.New("the proxy's budget for large messages is exhausted")

// Budget bounds the bytes that the Readers sharing it hold in messages
// larger than their buffers at one time: a backstop, so that clients
// sending large messages the proxy cannot stream cannot together make it
// allocate without bound. The zero value, or a nil *Budget, has no limit.
type Budget struct {
	mu    sync.Mutex
	max   int64
	inUse int64
}

// NewBudget returns a budget of max bytes; max <= 0 means no limit.
func NewBudget(max int64) *Budget { return &Budget{max: max} }

// SetMax changes the limit; what is in use stays.
func (b *Budget) SetMax(max int64) {
	b.mu.Lock()
	b.max = max
	b.mu.Unlock()
}

// InUse reports the bytes held now.
func (b *Budget) InUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.inUse
}

func (b *Budget) take(n int) bool {
	if b == nil {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.max > 0 && b.inUse+int64(n) > b.max {
		return false
	}
	b.inUse += int64(n)
	return true
}

func (b *Budget) give(n int) {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.inUse -= int64(n)
	b.mu.Unlock()
}
