package wire

import "sync"

// BufferPool lends fixed-size buffers, so that thousands of mostly idle
// connections share a few instead of each holding its own: see
// NewPooledReader. It is safe for concurrent use.
type BufferPool struct {
	size int
	p    sync.Pool // of *[]byte: a pointer, so Put does not allocate
}

// NewBufferPool returns a pool of buffers of size bytes.
func NewBufferPool(size int) *BufferPool {
	bp := &BufferPool{size: size}
	bp.p.New = func() any {
		b := make([]byte, size)
		return &b
	}
	return bp
}

// Size is the length of the pool's buffers.
func (bp *BufferPool) Size() int { return bp.size }

// Get returns a buffer of Size bytes, with arbitrary contents.
func (bp *BufferPool) Get() *[]byte { return bp.p.Get().(*[]byte) }

// Put gives back a buffer that Get returned; the caller must not use it
// afterwards.
func (bp *BufferPool) Put(b *[]byte) { bp.p.Put(b) }
