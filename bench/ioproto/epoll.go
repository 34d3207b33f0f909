//go:build linux

package main

import (
	"errors"
	"fmt"
	"log"
	"net"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// epollFwd is option (b): one event loop per core, the shape of PgBouncer
// (one libevent loop) and Odyssey (one loop per worker thread). Each loop
// owns a listening socket on the same port (SO_REUSEPORT: the kernel
// spreads new clients over the loops), its share of the server
// connections, its clients, and a FIFO of clients waiting for one of its
// server connections. Sockets are non-blocking and level-triggered; a
// loop sleeps only in epoll_wait, and no goroutine is woken per message.
//
// Simplification: the pool is split between the loops instead of shared,
// so a client waits for a server connection of its own loop even if
// another loop has one idle. Output that a socket does not take at once is
// kept (EPOLLOUT) without stopping the reads that feed it.
type epollFwd struct {
	addr      string
	loops     []*eloop
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// eloop is one event loop. Everything in it is touched only by its
// goroutine, except stopfd.
type eloop struct {
	epfd, lfd, stopfd int
	lockThread        bool
	raw               bool // non-blocking system calls without the runtime's entersyscall
	greet             []byte
	conns             []*econn // by file descriptor
	free              []*econn // idle server connections
	waiting           []*econn // clients waiting for a server, oldest at head
	head              int
	events            []unix.EpollEvent
}

// econn is a client or server socket of a loop.
type econn struct {
	fd       int
	server   bool
	loggedIn bool // client: startup done
	waiting  bool // client: in the loop's queue
	closed   bool
	peer     *econn // the bound client or server
	buf      []byte
	end      int // buf[:end] holds data not yet handled
	fr       framer
	out      []byte // output the socket did not take yet
	interest uint32
	txn      txn // server: the release rule
}

func startEpoll(cfg config, servers []net.Conn, greet []byte) (forwarder, error) {
	n := cfg.Loops
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	// A loop without a server connection could never serve its clients.
	n = min(n, len(servers))
	f := &epollFwd{}
	fail := func(err error) (forwarder, error) {
		for _, l := range f.loops {
			l.closeAll()
		}
		for _, c := range servers {
			c.Close()
		}
		return nil, err
	}
	host, port, err := splitHostPort(cfg.Listen)
	if err != nil {
		return fail(err)
	}
	for range n {
		l, err := newLoop(host, port, greet, cfg.LockThread)
		if err != nil {
			return fail(err)
		}
		l.raw = cfg.Raw
		f.loops = append(f.loops, l)
		if port == 0 {
			// The first loop chose the port; the others join it.
			sa, err := unix.Getsockname(l.lfd)
			if err != nil {
				return fail(err)
			}
			port = sa.(*unix.SockaddrInet4).Port
		}
	}
	f.addr = net.JoinHostPort(net.IP(host[:]).String(), strconv.Itoa(port))
	for i, c := range servers {
		fd, err := takeFD(c)
		if err != nil {
			return fail(err)
		}
		l := f.loops[i%len(f.loops)]
		s := &econn{fd: fd, server: true, buf: make([]byte, bufSize), txn: newTxn()}
		if err := l.add(s, unix.EPOLLIN); err != nil {
			unix.Close(fd)
			return fail(err)
		}
		l.free = append(l.free, s)
	}
	for _, l := range f.loops {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			l.run()
		}()
	}
	return f, nil
}

func (f *epollFwd) Addr() string { return f.addr }

func (f *epollFwd) Close() error {
	f.closeOnce.Do(func() {
		one := []byte{1, 0, 0, 0, 0, 0, 0, 0} // eventfd(2): an 8-byte counter
		for _, l := range f.loops {
			unix.Write(l.stopfd, one)
		}
		f.wg.Wait()
	})
	return nil
}

func splitHostPort(addr string) ([4]byte, int, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return [4]byte{}, 0, err
	}
	ip := net.ParseIP(h).To4()
	if ip == nil {
		return [4]byte{}, 0, fmt.Errorf("listen address %q: epoll wants an IPv4 address", addr)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return [4]byte{}, 0, fmt.Errorf("listen address %q: %w", addr, err)
	}
	return [4]byte(ip), port, nil
}

// takeFD duplicates the socket of a logged-in server connection and
// closes the net.Conn: the loop owns the copy. The copy shares the
// original's O_NONBLOCK (Go's sockets are non-blocking).
func takeFD(c net.Conn) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1, fmt.Errorf("server connection %T has no file descriptor", c)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var dupErr error
	if err := raw.Control(func(f uintptr) {
		fd, dupErr = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, err
	}
	c.Close()
	if dupErr != nil {
		return -1, fmt.Errorf("dup server socket: %w", dupErr)
	}
	return fd, unix.SetNonblock(fd, true)
}

func newLoop(host [4]byte, port int, greet []byte, lockThread bool) (*eloop, error) {
	l := &eloop{epfd: -1, lfd: -1, stopfd: -1, greet: greet, lockThread: lockThread, events: make([]unix.EpollEvent, 128)}
	var err error
	if l.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	if l.stopfd, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
		l.closeAll()
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	if l.lfd, err = listenReusePort(host, port); err != nil {
		l.closeAll()
		return nil, err
	}
	for _, fd := range []int{l.stopfd, l.lfd} {
		if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
			l.closeAll()
			return nil, fmt.Errorf("epoll_ctl: %w", err)
		}
	}
	return l, nil
}

func listenReusePort(host [4]byte, port int) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	for _, opt := range []int{unix.SO_REUSEADDR, unix.SO_REUSEPORT} {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt, 1); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("setsockopt: %w", err)
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: host, Port: port}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind port %d: %w", port, err)
	}
	if err := unix.Listen(fd, 4096); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("listen: %w", err)
	}
	return fd, nil
}

// closeAll closes every socket of the loop; the loop must not run.
func (l *eloop) closeAll() {
	for _, c := range l.conns {
		if c != nil {
			unix.Close(c.fd)
		}
	}
	for _, fd := range []int{l.lfd, l.stopfd, l.epfd} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}

func (l *eloop) add(c *econn, events uint32) error {
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, c.fd, &unix.EpollEvent{Events: events, Fd: int32(c.fd)}); err != nil {
		return fmt.Errorf("epoll_ctl add: %w", err)
	}
	c.interest = events
	for len(l.conns) <= c.fd {
		l.conns = append(l.conns, nil)
	}
	l.conns[c.fd] = c
	return nil
}

func (l *eloop) setInterest(c *econn, events uint32) {
	if c.closed || c.interest == events {
		return
	}
	c.interest = events
	unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, c.fd, &unix.EpollEvent{Events: events, Fd: int32(c.fd)})
}

// run is the loop: wait, handle every ready socket, until stopfd fires.
func (l *eloop) run() {
	if l.lockThread {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
	}
	defer l.closeAll()
	for {
		n, err := l.wait()
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			log.Printf("epoll_wait: %v", err)
			return
		}
		for i := range n {
			ev := l.events[i]
			fd := int(ev.Fd)
			switch {
			case fd == l.stopfd:
				return
			case fd == l.lfd:
				l.accept()
				continue
			}
			if fd >= len(l.conns) || l.conns[fd] == nil {
				continue
			}
			c := l.conns[fd]
			if ev.Events&unix.EPOLLOUT != 0 {
				l.flush(c)
			}
			if c.closed || ev.Events&(unix.EPOLLIN|unix.EPOLLHUP|unix.EPOLLERR) == 0 {
				continue
			}
			if c.waiting {
				// Not reading it until a server is free; only a hang-up
				// is news.
				if ev.Events&(unix.EPOLLHUP|unix.EPOLLERR) != 0 {
					l.closeConn(c)
				}
				continue
			}
			l.readable(c)
		}
	}
}

// wait returns the ready sockets, sleeping until there is one. With raw,
// it first polls without a timeout as a raw system call: a blocking call
// must tell the runtime (entersyscall, so that another thread may take the
// P), a call that cannot block need not, and under load there is almost
// always something ready.
func (l *eloop) wait() (int, error) {
	if l.raw {
		r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_WAIT, uintptr(l.epfd), uintptr(unsafe.Pointer(&l.events[0])), uintptr(len(l.events)), 0, 0, 0)
		if e == 0 && r > 0 {
			return int(r), nil
		}
	}
	return unix.EpollWait(l.epfd, l.events, -1)
}

// read and write are read(2) and write(2) on a non-blocking socket; with
// raw they skip the runtime's entersyscall and exitsyscall (see wait).
func (l *eloop) read(fd int, b []byte) (int, error) {
	if !l.raw {
		return unix.Read(fd, b)
	}
	return rawRW(unix.SYS_READ, fd, b)
}

func (l *eloop) write(fd int, b []byte) (int, error) {
	if !l.raw {
		return unix.Write(fd, b)
	}
	return rawRW(unix.SYS_WRITE, fd, b)
}

func rawRW(trap uintptr, fd int, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	r, _, e := unix.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

func (l *eloop) accept() {
	for {
		fd, _, err := unix.Accept4(l.lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			// EAGAIN: no more for now. Anything else (EMFILE...) also
			// ends this round; level-triggering brings it back.
			return
		}
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		c := &econn{fd: fd, buf: make([]byte, bufSize)}
		if err := l.add(c, unix.EPOLLIN); err != nil {
			unix.Close(fd)
		}
	}
}

// readable reads once from c and handles what came.
func (l *eloop) readable(c *econn) {
	n, err := l.read(c.fd, c.buf[c.end:])
	if err == unix.EAGAIN {
		return
	}
	if err != nil || n == 0 {
		l.closeConn(c)
		return
	}
	c.end += n
	switch {
	case c.server:
		l.serverData(c)
	case !c.loggedIn:
		l.startup(c)
	default:
		l.clientData(c)
	}
}

func (l *eloop) startup(c *econn) {
	for {
		act, n, _ := parseStartup(c.buf[:c.end])
		switch act {
		case startupNeedMore:
			if c.end == len(c.buf) {
				l.closeConn(c)
			}
			return
		case startupDeclineSSL:
			l.send(c, []byte{'N'})
		case startupGreet:
			l.send(c, l.greet)
			c.loggedIn = true
			c.end = copy(c.buf, c.buf[n:c.end])
			c.fr = framer{fromClient: true}
			l.clientData(c)
			return
		case startupClose:
			l.closeConn(c)
			return
		}
		c.end = copy(c.buf, c.buf[n:c.end])
	}
}

// clientData forwards what the client sent to its server, binding one
// first; with none free, the client joins the queue and is not read
// until one is.
func (l *eloop) clientData(c *econn) {
	if c.peer == nil {
		if c.end < headerLen {
			return
		}
		if c.buf[0] == msgTerminate {
			l.closeConn(c)
			return
		}
		if len(l.free) == 0 {
			c.waiting = true
			l.waiting = append(l.waiting, c)
			l.setInterest(c, c.interest&^unix.EPOLLIN)
			return
		}
		s := l.free[len(l.free)-1]
		l.free = l.free[:len(l.free)-1]
		c.peer, s.peer = s, c
	}
	sc, err := c.fr.scan(c.buf[:c.end])
	if err != nil {
		l.closeConn(c)
		return
	}
	if sc.n > 0 {
		l.send(c.peer, c.buf[:sc.n])
		c.peer.txn.sent(sc.syncs)
	}
	if sc.terminate {
		l.closeConn(c)
		return
	}
	c.end = copy(c.buf, c.buf[sc.n:c.end])
}

// serverData forwards the server's answer to the bound client and
// releases the connection at the ReadyForQuery that makes it releasable.
func (l *eloop) serverData(s *econn) {
	sc, err := s.fr.scan(s.buf[:s.end])
	if err != nil {
		l.closeConn(s)
		return
	}
	c := s.peer
	if c != nil {
		s.txn.answered(sc)
		l.send(c, s.buf[:sc.n])
	}
	// Unbound: a notice between transactions, for nobody.
	s.end = copy(s.buf, s.buf[sc.n:s.end])
	if c != nil && sc.ready > 0 && s.txn.releasable() {
		c.peer, s.peer = nil, nil
		l.release(s)
	}
}

// release hands s to the oldest waiting client, or back to the free list.
func (l *eloop) release(s *econn) {
	for l.head < len(l.waiting) {
		c := l.waiting[l.head]
		l.waiting[l.head] = nil
		l.head++
		if c.closed || !c.waiting {
			continue
		}
		c.waiting = false
		c.peer, s.peer = s, c
		l.setInterest(c, c.interest|unix.EPOLLIN)
		l.clientData(c)
		return
	}
	l.waiting, l.head = l.waiting[:0], 0
	l.free = append(l.free, s)
}

// send writes b to c, keeping what the socket does not take for EPOLLOUT.
// A failed write is left for the next read of c to find.
func (l *eloop) send(c *econn, b []byte) {
	if c.closed || len(b) == 0 {
		return
	}
	if len(c.out) > 0 {
		c.out = append(c.out, b...)
		return
	}
	n, err := l.write(c.fd, b)
	if err != nil {
		if !errors.Is(err, unix.EAGAIN) {
			return
		}
		n = 0
	}
	if n < len(b) {
		c.out = append(c.out[:0], b[n:]...)
		l.setInterest(c, c.interest|unix.EPOLLOUT)
	}
}

func (l *eloop) flush(c *econn) {
	if c.closed || len(c.out) == 0 {
		l.setInterest(c, c.interest&^unix.EPOLLOUT)
		return
	}
	n, err := l.write(c.fd, c.out)
	if err != nil {
		if !errors.Is(err, unix.EAGAIN) {
			l.closeConn(c)
		}
		return
	}
	c.out = c.out[:copy(c.out, c.out[n:])]
	if len(c.out) == 0 {
		l.setInterest(c, c.interest&^unix.EPOLLOUT)
	}
}

// closeConn closes c. A client's server connection goes back if it is
// idle and is closed otherwise; a server's client is closed with it.
func (l *eloop) closeConn(c *econn) {
	if c.closed {
		return
	}
	c.closed = true
	c.waiting = false
	l.conns[c.fd] = nil
	unix.Close(c.fd) // also removes it from the epoll set
	p := c.peer
	c.peer = nil
	if p == nil {
		if c.server {
			for i, s := range l.free {
				if s == c {
					l.free = append(l.free[:i], l.free[i+1:]...)
					break
				}
			}
		}
		return
	}
	p.peer = nil
	switch {
	case c.server:
		l.closeConn(p)
	case p.txn.releasable():
		l.release(p)
	default:
		l.closeConn(p)
	}
}
