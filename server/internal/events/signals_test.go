package events

import (
	"sync"
	"testing"
)

func TestSignalsFanOutWithoutBlocking(t *testing.T) {
	s := NewSignals()
	a, stopA := s.Subscribe("c1")
	b, stopB := s.Subscribe("c1")
	other, stopOther := s.Subscribe("c2")
	defer stopOther()

	s.Publish("c1", Signal{From: "x", Payload: 1})
	for name, ch := range map[string]<-chan Signal{"a": a, "b": b} {
		if got := <-ch; got.Payload != 1 {
			t.Fatalf("%s got %v", name, got)
		}
	}
	select {
	case got := <-other:
		t.Fatalf("a subscriber of another key got %v", got)
	default:
	}

	// A subscriber that never reads does not hold up publishers; it misses
	// what does not fit its buffer.
	stopA()
	for i := range signalBuffer + 10 {
		s.Publish("c1", Signal{Payload: i})
	}
	if len(b) != signalBuffer {
		t.Fatalf("b holds %d signals, want a full buffer of %d", len(b), signalBuffer)
	}
	stopB()
	if len(s.subs) != 1 {
		t.Fatalf("%d keys left after their subscribers left, want 1", len(s.subs))
	}

	// Subscribing, publishing and leaving concurrently is safe (run with -race).
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				ch, stop := s.Subscribe("c3")
				s.Publish("c3", Signal{})
				<-ch
				stop()
			}
		})
	}
	wg.Wait()
}
