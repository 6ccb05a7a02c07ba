package kubeapi

import (
	"context"
	"sync"
)

// queue is a bounded FIFO that never blocks its producer: pushing onto a
// full queue drops the oldest item, and the caller counts it. Items wait
// here while the API server is slow or down; the newest are what a user
// looking at a pod wants.
type queue[T any] struct {
	mu    sync.Mutex
	items []T // items[head], items[head+1], ... (mod cap): n of them
	head  int
	n     int
	ready chan struct{} // 1-buffered: something was pushed
}

func newQueue[T any](capacity int) *queue[T] {
	return &queue[T]{items: make([]T, max(capacity, 1)), ready: make(chan struct{}, 1)}
}

// push appends x, dropping the oldest item when full; it reports whether
// one was dropped.
func (q *queue[T]) push(x T) (dropped bool) {
	q.mu.Lock()
	if q.n == len(q.items) {
		var zero T
		q.items[q.head] = zero
		q.head = (q.head + 1) % len(q.items)
		q.n--
		dropped = true
	}
	q.items[(q.head+q.n)%len(q.items)] = x
	q.n++
	q.mu.Unlock()
	q.wake()
	return dropped
}

// pushFront puts back an item taken for a retry, as the oldest; when the
// queue filled up meanwhile, the item itself is the oldest and is dropped.
func (q *queue[T]) pushFront(x T) (dropped bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n == len(q.items) {
		return true
	}
	q.head = (q.head - 1 + len(q.items)) % len(q.items)
	q.items[q.head] = x
	q.n++
	q.wake()
	return false
}

func (q *queue[T]) wake() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// tryPop takes the oldest item, if any.
func (q *queue[T]) tryPop() (T, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var zero T
	if q.n == 0 {
		return zero, false
	}
	x := q.items[q.head]
	q.items[q.head] = zero
	q.head = (q.head + 1) % len(q.items)
	q.n--
	return x, true
}

// pop waits for the oldest item until ctx is done.
func (q *queue[T]) pop(ctx context.Context) (T, bool) {
	for {
		if x, ok := q.tryPop(); ok {
			return x, true
		}
		select {
		case <-q.ready:
		case <-ctx.Done():
			var zero T
			return zero, false
		}
	}
}

func (q *queue[T]) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

func (q *queue[T]) capacity() int { return len(q.items) }
