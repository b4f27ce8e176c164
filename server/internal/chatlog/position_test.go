package chatlog

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/parleyhq/parley/ent"
)

// TestPositions: the chats served first are those of higher priority, then
// those queued earlier, then those of a lower id; a chat without a queued
// time has no place but counts ahead of lower priorities; the estimate is
// the place times the hour divided by the chats taken in it.
func TestPositions(t *testing.T) {
	t0 := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	at := func(m int) *time.Time { v := t0.Add(time.Duration(m) * time.Minute); return &v }
	id := func(b byte) uuid.UUID { return uuid.UUID{b} }
	waiting := []*ent.Conversation{
		{ID: id(1), Priority: 0, QueuedAt: at(1)},
		{ID: id(2), Priority: 5, QueuedAt: at(9)},
		{ID: id(3), Priority: 0, QueuedAt: at(0)},
		{ID: id(4), Priority: 0, QueuedAt: at(1)}, // same time as 1: the lower id goes first
		{ID: id(5), Priority: 3},                  // no queued time
	}
	tests := []struct {
		taken int
		want  map[byte]int32
		wait  map[byte]time.Duration
	}{
		{taken: 0, want: map[byte]int32{2: 1, 3: 3, 1: 4, 4: 5}},
		{taken: 4, want: map[byte]int32{2: 1, 3: 3, 1: 4, 4: 5}, wait: map[byte]time.Duration{2: 15 * time.Minute, 4: 75 * time.Minute}},
	}
	for _, tt := range tests {
		got := positions("q", waiting, tt.taken)
		if len(got) != len(tt.want) {
			t.Fatalf("taken %d: %d positions, want %d", tt.taken, len(got), len(tt.want))
		}
		for b, want := range tt.want {
			pos := got[id(b)]
			if pos.GetPosition() != want || pos.GetQueueId() != "q" {
				t.Errorf("taken %d: chat %d is at %v, want %d", tt.taken, b, pos, want)
			}
			if tt.taken == 0 && pos.GetEstimatedWait() != nil {
				t.Errorf("chat %d has an estimate without any chat taken", b)
			}
			if w, ok := tt.wait[b]; ok && pos.GetEstimatedWait().AsDuration() != w {
				t.Errorf("taken %d: chat %d waits %v, want %v", tt.taken, b, pos.GetEstimatedWait().AsDuration(), w)
			}
		}
	}
}
