package conn

// GoingAway returns a channel that is closed when the peer's GOAWAY
// arrives (PROTOCOL.md §7): the connection takes no new call, and calls
// and streams still pending finish or fail. A client that keeps a
// connection open (client.Reconnecting) dials its successor then, without
// waiting for a call to fail with ErrGoAway or for Done. The channel stays
// open if the connection closes without a GOAWAY: select on Done as well.
func (c *Conn) GoingAway() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.away == nil {
		c.away = make(chan struct{})
		if c.peerAway {
			close(c.away)
		}
	}
	return c.away
}

// peerGoAwayLocked records the peer's GOAWAY for GoingAway; c.mu is held.
func (c *Conn) peerGoAwayLocked() {
	if c.peerAway {
		return
	}
	c.peerAway = true
	if c.away != nil {
		close(c.away)
	}
}
