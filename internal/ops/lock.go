package ops

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/pauseproxy/pauseproxy/internal/config"
)

// One switchover (or exec) per cluster at a time: two at once would pause
// and resume each other's traffic and ask Patroni for conflicting moves.

// ErrLocked is returned when another switchover or exec holds the lock.
var ErrLocked = errors.New("another switchover or exec of this cluster is under way")

// lockWait is how long a command waits for the lock before it gives up:
// it never queues behind another switchover.
const lockWait = 2 * time.Second

// lockKey is the Consul key (and lock file stem) of scope's lock.
func lockKey(scope string) string { return "pauseproxy/" + scope + "/switchover" }

// acquireLock takes the lock of scope: in Consul when the database uses
// Consul (so that commands on any host exclude each other), otherwise a
// lock file under the temporary directory (commands on this host only).
// It returns the function that releases it.
func acquireLock(dc *config.Database, scope string, log *slog.Logger) (release func() error, where string, err error) {
	if dc.Discovery == config.DiscoveryConsul {
		return consulLock(dc, scope, log)
	}
	return fileLock(scope)
}

// LockDirEnv names the environment variable that moves the lock files of
// commands not using Consul out of the temporary directory (for a host
// where operators do not share one /tmp, or tests that must not meet).
const LockDirEnv = "PAUSEPROXY_LOCK_DIR"

// fileLock takes an exclusive flock on
// <dir>/pauseproxy-<scope>.switchover.lock, dir being $PAUSEPROXY_LOCK_DIR
// or the temporary directory. The file stays: removing it would let a
// waiter lock a file no longer linked while a newcomer locks a new one.
func fileLock(scope string) (func() error, string, error) {
	dir := os.Getenv(LockDirEnv)
	if dir == "" {
		dir = os.TempDir()
	}
	path := filepath.Join(dir, "pauseproxy-"+safeName(scope)+".switchover.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, path, fmt.Errorf("lock file: %w", err)
	}
	deadline := time.Now().Add(lockWait)
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			holder, _ := os.ReadFile(path)
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, path, fmt.Errorf("%w (lock file %s held by %s)", ErrLocked, path, strings.TrimSpace(string(holder)))
			}
			return nil, path, fmt.Errorf("lock file %s: %w", path, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	f.Truncate(0)
	f.WriteAt([]byte(lockHolder()+"\n"), 0)
	return func() error {
		f.Truncate(0)
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		return errors.Join(err, f.Close())
	}, path, nil
}

// lockHolder describes this process for whoever finds the lock taken.
func lockHolder() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("pid %d on %s since %s", os.Getpid(), host, time.Now().UTC().Format(time.RFC3339))
}

// safeName keeps a scope usable in a file name.
func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, s)
}

// consulLock takes the Consul lock pauseproxy/<scope>/switchover with a
// session of its own (github.com/hashicorp/consul/api Lock). The session's
// TTL makes a lock of a dead process go by itself.
func consulLock(dc *config.Database, scope string, log *slog.Logger) (func() error, string, error) {
	key := lockKey(scope)
	client, err := api.NewClient(&api.Config{
		Address:    dc.ConsulAddr,
		Scheme:     dc.ConsulScheme,
		Token:      dc.ConsulToken,
		Datacenter: dc.ConsulDatacenter,
		TLSConfig:  api.TLSConfig{CAFile: dc.ConsulCAFile},
		// No idle connections left behind: a command makes few requests.
		Transport: &http.Transport{
			Proxy:             nil,
			DisableKeepAlives: true,
			DialContext:       (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		},
	})
	if err != nil {
		return nil, key, fmt.Errorf("consul: %w", err)
	}
	l, err := client.LockOpts(&api.LockOptions{
		Key:          key,
		Value:        []byte(lockHolder()),
		SessionName:  "pauseproxy switchover " + scope,
		SessionTTL:   "15s",
		LockTryOnce:  true,
		LockWaitTime: lockWait,
	})
	if err != nil {
		return nil, key, fmt.Errorf("consul lock %s: %w", key, err)
	}
	lost, err := l.Lock(nil)
	if err != nil {
		return nil, key, fmt.Errorf("consul lock %s at %s: %w", key, dc.ConsulAddr, err)
	}
	if lost == nil {
		holder := ""
		if kv, _, err := client.KV().Get(key, nil); err == nil && kv != nil {
			holder = string(kv.Value)
		}
		return nil, key, fmt.Errorf("%w (Consul lock %s held by %s)", ErrLocked, key, orNone(holder))
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-lost:
			log.Warn("lost the Consul lock; the command goes on", slog.String("key", key))
		case <-done:
		}
	}()
	return func() error {
		close(done)
		return l.Unlock()
	}, "consul " + key, nil
}
