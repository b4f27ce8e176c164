package delivery

import "github.com/parleyhq/parley/ent"

// Window is a run of a conversation's most recent committed events, with
// consecutive seqs ending at its head. It is a value: Extend returns a new
// window and never changes what an older one holds, so a window can be
// read by any number of goroutines.
type Window struct {
	// events[i].Seq is First()+i.
	events []*ent.Event
	head   int64
}

// NewWindow returns an empty window at head: it holds no events, and the
// events after head extend it.
func NewWindow(head int64) Window { return Window{head: head} }

// Head is the seq of the newest event the window has seen.
func (w Window) Head() int64 { return w.head }

// First is the seq of the oldest event the window holds (Head()+1 if it
// holds none).
func (w Window) First() int64 { return w.head - int64(len(w.events)) + 1 }

// After returns up to limit of the events with seq > after, in seq order
// (none if after is at or past the head), and reports false if the window
// no longer holds the event after it: the caller is behind the window, or
// before a gap, and reads the store instead. The events are shared: read
// them, never change them.
func (w Window) After(after int64, limit int) ([]*ent.Event, bool) {
	if after >= w.head {
		return nil, true
	}
	if after+1 < w.First() {
		return nil, false
	}
	evs := w.events[after+1-w.First():]
	if len(evs) > limit {
		evs = evs[:limit]
	}
	return evs[:len(evs):len(evs)], true
}

// Extend returns the window with evs appended, keeping the newest size
// events. evs are events read after the window's head, in seq order: one
// at or below the head is skipped, and one that does not follow the head
// (a gap: the seqs in between were not read) starts the window anew, so
// the window never holds a gap.
func (w Window) Extend(evs []*ent.Event, size int) Window {
	kept := w.events
	head := w.head
	var added []*ent.Event
	for _, ev := range evs {
		if ev.Seq <= head {
			continue
		}
		if ev.Seq > head+1 {
			kept, added = nil, nil
		}
		added = append(added, ev)
		head = ev.Seq
	}
	if len(added) == 0 {
		return w
	}
	kept = kept[max(0, len(kept)-max(0, size-len(added))):]
	added = added[max(0, len(added)-size):]
	events := make([]*ent.Event, 0, len(kept)+len(added))
	return Window{events: append(append(events, kept...), added...), head: head}
}
