package delivery

import (
	"math/rand/v2"
	"testing"

	"github.com/parleyhq/parley/ent"
)

// run returns events with seqs from..to.
func run(from, to int64) []*ent.Event {
	var out []*ent.Event
	for seq := from; seq <= to; seq++ {
		out = append(out, &ent.Event{Seq: seq})
	}
	return out
}

// seqs lists the seqs of evs.
func seqs(evs []*ent.Event) []int64 {
	out := make([]int64, len(evs))
	for i, ev := range evs {
		out[i] = ev.Seq
	}
	return out
}

func TestWindowAfter(t *testing.T) {
	w := NewWindow(10).Extend(run(11, 15), 4) // holds 12..15
	tests := []struct {
		after  int64
		limit  int
		want   []int64
		inside bool
	}{
		{after: 15, limit: 10, want: []int64{}, inside: true},
		{after: 20, limit: 10, want: []int64{}, inside: true},
		{after: 11, limit: 10, want: []int64{12, 13, 14, 15}, inside: true},
		{after: 12, limit: 2, want: []int64{13, 14}, inside: true},
		{after: 10, limit: 10, want: []int64{}, inside: false}, // 11 fell out
		{after: 0, limit: 10, want: []int64{}, inside: false},
	}
	for _, tt := range tests {
		evs, inside := w.After(tt.after, tt.limit)
		if got := seqs(evs); inside != tt.inside || len(got) != len(tt.want) || (len(got) > 0 && got[0] != tt.want[0]) {
			t.Errorf("After(%d, %d) = %v, %v; want %v, %v", tt.after, tt.limit, got, inside, tt.want, tt.inside)
		}
	}
	if w.First() != 12 || w.Head() != 15 {
		t.Fatalf("window %d..%d, want 12..15", w.First(), w.Head())
	}
}

func TestWindowExtend(t *testing.T) {
	tests := []struct {
		name        string
		w           Window
		read        []*ent.Event
		first, head int64
	}{
		{"empty read", NewWindow(5), nil, 6, 5},
		{"follows the head", NewWindow(5), run(6, 7), 6, 7},
		{"overflows", NewWindow(5).Extend(run(6, 8), 4), run(9, 11), 8, 11},
		{"a read larger than the window", NewWindow(0), run(1, 9), 6, 9},
		{"already seen", NewWindow(0).Extend(run(1, 3), 4), run(2, 4), 1, 4},
		{"gap starts anew", NewWindow(0).Extend(run(1, 3), 4), run(6, 7), 6, 7},
		{"gap inside a read", NewWindow(0), append(run(1, 2), run(5, 6)...), 5, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := tt.w.Extend(tt.read, 4)
			if w.First() != tt.first || w.Head() != tt.head {
				t.Fatalf("window %d..%d, want %d..%d", w.First(), w.Head(), tt.first, tt.head)
			}
			checkWindow(t, w, 4)
		})
	}
}

// checkWindow fails unless w holds at most size events with consecutive
// seqs ending at its head.
func checkWindow(t *testing.T, w Window, size int) {
	t.Helper()
	if len(w.events) > size {
		t.Fatalf("window holds %d events, more than %d", len(w.events), size)
	}
	for i, ev := range w.events {
		if ev.Seq != w.First()+int64(i) {
			t.Fatalf("window %v is not consecutive up to its head %d", seqs(w.events), w.head)
		}
	}
}

// TestWindowProperties extends windows with random reads of a log (in
// order, with repeats and skipped stretches) and checks against the log:
// the window is consecutive and bounded, older windows never change, and
// After hands out exactly the log's events after a seq or says it cannot.
func TestWindowProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	log := run(1, 2000)
	for round := range 200 {
		size := 1 + rng.IntN(16)
		w := NewWindow(int64(rng.IntN(5)))
		var history []Window
		var held [][]int64
		for w.Head() < int64(len(log)) {
			from := w.Head() + 1 - int64(rng.IntN(3)) // repeats
			if rng.IntN(10) == 0 {
				from += int64(1 + rng.IntN(5)) // a gap
			}
			from = min(max(from, 1), int64(len(log)))
			to := min(from+int64(rng.IntN(2*size)), int64(len(log)))
			w = w.Extend(log[from-1:to], size)
			checkWindow(t, w, size)
			history = append(history, w)
			held = append(held, seqs(w.events))
			after := w.Head() - int64(rng.IntN(2*size+2))
			limit := 1 + rng.IntN(size+1)
			evs, inside := w.After(after, limit)
			switch {
			case inside && after < w.Head() && (len(evs) == 0 || evs[0].Seq != after+1 || len(evs) > limit):
				t.Fatalf("round %d: After(%d, %d) on %d..%d gave %v", round, after, limit, w.First(), w.Head(), seqs(evs))
			case inside && len(evs) < limit && len(evs) > 0 && evs[len(evs)-1].Seq != w.Head():
				t.Fatalf("round %d: After(%d, %d) stopped short at %v", round, after, limit, seqs(evs))
			case !inside && after+1 >= w.First():
				t.Fatalf("round %d: After(%d) refused though the window holds %d..%d", round, after, w.First(), w.Head())
			}
		}
		for i, old := range history {
			if got := seqs(old.events); len(got) != len(held[i]) || (len(got) > 0 && (got[0] != held[i][0] || got[len(got)-1] != held[i][len(got)-1])) {
				t.Fatalf("round %d: window %d changed from %v to %v", round, i, held[i], got)
			}
		}
	}
}
