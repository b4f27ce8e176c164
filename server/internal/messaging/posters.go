package messaging

import (
	"sync"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/ent/event"
	"github.com/parleyhq/parley/server/internal/auth"
	"github.com/parleyhq/parley/server/internal/chatlog"
)

// maxPosters bounds the posters cache; when it is full it starts over.
const maxPosters = 100_000

// posters remembers, per conversation and customer or guest, what a send
// needs that never changes once it is set, so a customer's or guest's
// sends after the first skip reading the conversation:
//   - that they may post there at all: a guest's token names its one
//     conversation, and a conversation's consumer, once set (at the start
//     or by a claim), is never changed;
//   - the sender they write as (a consumer's and a guest form's name are
//     never changed) and the conversation's channel.
//
// What does change, the conversation's state, is checked by the write
// itself (chatlog.AppendPost); the credential is checked by the auth
// interceptor on every call. Agents are not cached: whether they may post
// depends on holding the chat, which changes.
type posters struct {
	mu sync.Mutex
	m  map[posterKey]poster
}

type posterKey struct {
	conversation uuid.UUID
	caller       string
}

type poster struct {
	sender  chatlog.Sender
	channel event.Channel
}

func newPosters() *posters { return &posters{m: make(map[posterKey]poster)} }

// cacheable tells whether p's right to post is one of the facts above.
func cacheable(p *auth.Principal) bool {
	return p.Role == auth.RoleGuest || p.Role == auth.RoleCustomer
}

func (c *posters) get(conversation uuid.UUID, p *auth.Principal) (poster, bool) {
	if !cacheable(p) {
		return poster{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	got, ok := c.m[posterKey{conversation, p.Caller()}]
	return got, ok
}

func (c *posters) put(conversation uuid.UUID, p *auth.Principal, v poster) {
	if !cacheable(p) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxPosters {
		clear(c.m)
	}
	c.m[posterKey{conversation, p.Caller()}] = v
}
