package control

import (
	"context"
	"encoding/json"
	"sync"
)

// hubBuffer is how many events a subscriber may be behind before it is
// dropped: the publisher (the pool's loop) never waits for a reader.
const hubBuffer = 1024

// Hub fans events out to the event streams. Its zero value is ready.
type Hub struct {
	mu   sync.Mutex
	subs map[chan []byte]struct{}
}

// Publish sends v, as one JSON line, to every subscriber without waiting:
// a subscriber whose buffer is full is dropped (its channel closed).
func (h *Hub) Publish(v any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.subs) == 0 {
		return // nobody listens: not even the encoding
	}
	b, err := json.Marshal(v)
	if err != nil {
		return
	}
	for c := range h.subs {
		select {
		case c <- b:
		default:
			delete(h.subs, c)
			close(c)
		}
	}
}

// Subscribe returns a channel of events and the function that ends the
// subscription. The channel is closed when the subscriber fell behind by
// hubBuffer events, or on cancel.
func (h *Hub) Subscribe() (<-chan []byte, func()) {
	c := make(chan []byte, hubBuffer)
	h.mu.Lock()
	if h.subs == nil {
		h.subs = make(map[chan []byte]struct{})
	}
	h.subs[c] = struct{}{}
	h.mu.Unlock()
	return c, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if _, ok := h.subs[c]; ok {
			delete(h.subs, c)
			close(c)
		}
	}
}

// ErrBehind is sent to a stream that fell behind.
const ErrBehind = "events: this client fell behind by more than 1024 events and was dropped; reconnect"

// ServeEvents answers an events request: OK, then the stream's first line
// (hello, which says what follows is complete: subscribed before it is
// written), then every event published on h, until ctx ends, the server
// stops, the client goes, or it falls too far behind (a last line then
// says so).
func ServeEvents(ctx context.Context, r *Replier, h *Hub, hello func() Event) {
	c, cancel := h.Subscribe()
	defer cancel()
	if r.OK(nil) != nil || r.Stream(hello()) != nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.Stopping():
			return
		case b, ok := <-c:
			if !ok {
				r.Stream(map[string]string{"stream_error": ErrBehind})
				return
			}
			if r.Stream(json.RawMessage(b)) != nil {
				return
			}
		}
	}
}
