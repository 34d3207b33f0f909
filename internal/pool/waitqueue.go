package pool

import "time"

// waitQueue is the FIFO of clients waiting for a connection. It reuses its
// array: a slice that is popped from the front and appended to at the back
// would reallocate whenever its shrinking capacity ran out, which under
// queueing is every few transactions.
type waitQueue struct {
	q    []*waiter
	head int // q[head:] are waiting, oldest first
}

func (wq *waitQueue) len() int { return len(wq.q) - wq.head }

// front is the oldest waiter; the queue must not be empty.
func (wq *waitQueue) front() *waiter { return wq.q[wq.head] }

// all returns the waiters, oldest first, aliasing the queue.
func (wq *waitQueue) all() []*waiter { return wq.q[wq.head:] }

func (wq *waitQueue) push(w *waiter) {
	if wq.head > 0 && len(wq.q) == cap(wq.q) {
		// Full at the back with room at the front: slide down.
		n := copy(wq.q, wq.q[wq.head:])
		clear(wq.q[n:])
		wq.q = wq.q[:n]
		wq.head = 0
	}
	wq.q = append(wq.q, w)
}

// pop removes and returns the oldest waiter; the queue must not be empty.
func (wq *waitQueue) pop() *waiter {
	w := wq.q[wq.head]
	wq.q[wq.head] = nil
	wq.head++
	wq.rewind()
	return w
}

// remove takes w out of the queue wherever it is, reporting whether it was
// there.
func (wq *waitQueue) remove(w *waiter) bool {
	for i := wq.head; i < len(wq.q); i++ {
		if wq.q[i] == w {
			copy(wq.q[i:], wq.q[i+1:])
			wq.q[len(wq.q)-1] = nil
			wq.q = wq.q[:len(wq.q)-1]
			wq.rewind()
			return true
		}
	}
	return false
}

// expire takes out the waiters whose deadline is not after now, oldest
// first, calling f for each, and returns the earliest deadline left (zero
// if none).
func (wq *waitQueue) expire(now time.Time, f func(*waiter)) (next time.Time) {
	kept := wq.q[:wq.head]
	for _, w := range wq.q[wq.head:] {
		switch {
		case w.deadline.IsZero():
		case !now.Before(w.deadline):
			f(w)
			continue
		case next.IsZero() || w.deadline.Before(next):
			next = w.deadline
		}
		kept = append(kept, w)
	}
	clear(wq.q[len(kept):])
	wq.q = kept
	wq.rewind()
	return next
}

// reset empties the queue, dropping its array.
func (wq *waitQueue) reset() { *wq = waitQueue{} }

func (wq *waitQueue) rewind() {
	if wq.head == len(wq.q) {
		wq.q = wq.q[:0]
		wq.head = 0
	}
}
