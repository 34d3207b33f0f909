package pool

import (
	"slices"
	"testing"
)

// The queue against a plain slice model, through pushes, pops and
// removals in every order, and without allocating in steady state.
func TestWaitQueue(t *testing.T) {
	ws := make([]*waiter, 8)
	for i := range ws {
		ws[i] = &waiter{}
	}
	var wq waitQueue
	var model []*waiter
	check := func(step string) {
		t.Helper()
		if !slices.Equal(wq.all(), model) || wq.len() != len(model) {
			t.Fatalf("%s: queue %v, want %v", step, wq.all(), model)
		}
		if len(model) > 0 && wq.front() != model[0] {
			t.Fatalf("%s: front is not the oldest", step)
		}
	}
	// A deterministic walk: push two, pop one, sometimes remove one from
	// the middle, so that the head advances and the array slides.
	for i := range 200 {
		for j := range 2 {
			w := ws[(i*2+j)%len(ws)]
			if slices.Contains(model, w) {
				continue
			}
			wq.push(w)
			model = append(model, w)
		}
		check("push")
		if i%5 == 4 && len(model) > 2 {
			w := model[len(model)/2]
			if !wq.remove(w) {
				t.Fatal("remove: not found")
			}
			model = slices.DeleteFunc(model, func(x *waiter) bool { return x == w })
			check("remove")
		}
		if got := wq.pop(); got != model[0] {
			t.Fatal("pop: not the oldest")
		}
		model = model[1:]
		check("pop")
	}
	if wq.remove(&waiter{}) {
		t.Fatal("removed a waiter that was never queued")
	}
	for wq.len() > 0 {
		wq.pop()
	}
	if wq.head != 0 || len(wq.q) != 0 {
		t.Fatalf("empty queue not rewound: head %d, len %d", wq.head, len(wq.q))
	}

	// Queueing behind a busy pool: a push per pop, never empty.
	wq.push(ws[0])
	allocs := testing.AllocsPerRun(1000, func() {
		wq.push(ws[1])
		wq.pop()
		wq.push(ws[2])
		wq.pop()
	})
	if allocs != 0 {
		t.Fatalf("steady push/pop: %.1f allocations, want 0", allocs)
	}
}
