package discovery

import (
	"errors"
	"log/slog"
	"testing"
	"time"
)

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestPublisherGenerationAndChanged(t *testing.T) {
	p := newPublisher("test", slog.New(slog.DiscardHandler))
	if s := p.Snapshot(); s == nil || !errors.Is(s.Err, ErrNoAnswer) || s.Generation != 0 || s.Source != "test" {
		t.Fatalf("initial snapshot = %+v, want empty with ErrNoAnswer", s)
	}
	a := Member{Name: "a", Host: "10.0.0.1", Port: 5432, Role: "primary", State: "running"}
	b := Member{Name: "b", Host: "10.0.0.2", Port: 5432, Role: "replica", State: "running"}

	steps := []struct {
		name        string
		v           *view
		err         error
		wantGen     uint64
		wantChanged bool
		wantPrimary string // primaryKey
		wantErr     bool
	}{
		{name: "first primary", v: &view{Primary: &a, Replicas: []Member{b}}, wantGen: 1, wantChanged: true, wantPrimary: "a@10.0.0.1:5432"},
		{name: "same again", v: &view{Primary: &a, Replicas: []Member{b}}, wantGen: 1, wantPrimary: "a@10.0.0.1:5432"},
		{name: "only lag differs", v: &view{Primary: &a, Replicas: []Member{withLag(b, 42)}}, wantGen: 1, wantPrimary: "a@10.0.0.1:5432"},
		{name: "changing", v: &view{Primary: &a, Replicas: []Member{b}, Changing: true}, wantGen: 1, wantChanged: true, wantPrimary: "a@10.0.0.1:5432"},
		{name: "error keeps members", err: errors.New("boom"), wantGen: 1, wantChanged: true, wantPrimary: "a@10.0.0.1:5432", wantErr: true},
		{name: "still error", err: errors.New("boom2"), wantGen: 1, wantPrimary: "a@10.0.0.1:5432", wantErr: true},
		{name: "no primary", v: &view{Replicas: []Member{a, b}, Changing: true}, wantGen: 2, wantChanged: true},
		{name: "new primary", v: &view{Primary: &b, Replicas: []Member{a}}, wantGen: 3, wantChanged: true, wantPrimary: "b@10.0.0.2:5432"},
		{name: "same name new address", v: &view{Primary: &Member{Name: "b", Host: "10.0.0.3", Port: 5432}}, wantGen: 4, wantChanged: true, wantPrimary: "b@10.0.0.3:5432"},
	}
	for _, st := range steps {
		before := p.Snapshot()
		ch := p.Changed()
		s, primaryChanged, _ := p.update(st.v, st.err)
		if s != p.Snapshot() {
			t.Fatalf("%s: update did not publish its snapshot", st.name)
		}
		if s.Generation != st.wantGen {
			t.Errorf("%s: generation = %d, want %d", st.name, s.Generation, st.wantGen)
		}
		if primaryChanged != (st.wantGen != before.Generation) {
			t.Errorf("%s: primaryChanged = %v", st.name, primaryChanged)
		}
		if closed(ch) != st.wantChanged {
			t.Errorf("%s: Changed closed = %v, want %v", st.name, closed(ch), st.wantChanged)
		}
		if got := primaryKey(s.Primary); got != st.wantPrimary {
			t.Errorf("%s: primary = %q, want %q", st.name, got, st.wantPrimary)
		}
		if (s.Err != nil) != st.wantErr {
			t.Errorf("%s: err = %v", st.name, s.Err)
		}
		if st.err != nil && !s.Updated.Equal(before.Updated) {
			t.Errorf("%s: Updated moved on an error", st.name)
		}
		if st.err == nil && time.Since(s.Updated) > time.Second {
			t.Errorf("%s: Updated not set", st.name)
		}
		if before == s {
			t.Errorf("%s: snapshot modified in place", st.name)
		}
	}
}

func withLag(m Member, lag int64) Member {
	m.LagBytes = lag
	return m
}

func TestHurryNeverBlocks(t *testing.T) {
	p := newPublisher("test", slog.New(slog.DiscardHandler))
	for range 10 {
		p.Hurry()
	}
	if len(p.hurry) != 1 {
		t.Fatalf("hurry queue = %d, want 1", len(p.hurry))
	}
}

func TestOptionsDefaultsAndBackoff(t *testing.T) {
	o := Options{}.withDefaults()
	if o.Interval != time.Second || o.FastInterval != 100*time.Millisecond || o.HTTPTimeout != time.Second || o.FastPeriod != 5*time.Second || o.Logger == nil {
		t.Fatalf("defaults = %+v", o)
	}
	prev := time.Duration(0)
	for n := 1; n <= 12; n++ {
		d := o.backoff(n)
		if d <= 0 || d > 5*o.Interval*5/4 {
			t.Fatalf("backoff(%d) = %v out of range", n, d)
		}
		if n <= 3 && d < prev/2 {
			t.Fatalf("backoff(%d) = %v does not grow (prev %v)", n, d, prev)
		}
		prev = d
	}
}
