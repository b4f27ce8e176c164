package clock_test

import (
	"context"
	"testing"
	"time"

	"github.com/parleyhq/parley/server/internal/clock"
)

func TestFakeFiresTimersTickersAndFuncsOnAdvance(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := clock.NewFake(t0)
	timer := clk.NewTimer(time.Second)
	ticker := clk.NewTicker(time.Second)
	called := false
	clk.AfterFunc(2*time.Second, func() { called = true })
	if err := clk.WaitArmed(t.Context(), 3); err != nil {
		t.Fatal(err)
	}
	clk.Advance(999 * time.Millisecond)
	select {
	case <-timer.C():
		t.Fatal("the timer fired early")
	case <-ticker.C():
		t.Fatal("the ticker fired early")
	default:
	}
	clk.Advance(time.Millisecond)
	if got := <-timer.C(); !got.Equal(t0.Add(time.Second)) {
		t.Fatalf("timer sent %v", got)
	}
	<-ticker.C()
	if called {
		t.Fatal("AfterFunc ran early")
	}
	clk.Advance(time.Second)
	if !called {
		t.Fatal("AfterFunc did not run before Advance returned")
	}
	<-ticker.C()
	if n := clk.Armed(); n != 1 {
		t.Fatalf("%d armed after the timer and the func fired, want the ticker only", n)
	}
	// Reset drops an unreceived tick and restarts the period.
	clk.Advance(time.Second)
	ticker.Reset(5 * time.Second)
	clk.Advance(4 * time.Second)
	select {
	case <-ticker.C():
		t.Fatal("a tick from before Reset was received")
	default:
	}
	ticker.Stop()
	if timer.Stop() {
		t.Fatal("Stop of a fired timer reported it armed")
	}
	if clk.Armed() != 0 {
		t.Fatal("a stopped ticker is still armed")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	if err := clk.WaitArmed(ctx, 1); err == nil {
		t.Fatal("WaitArmed returned with nothing armed")
	}
}
