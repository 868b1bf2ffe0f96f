package main

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// runHandshake measures full handshakes: every operation dials a new TCP
// connection, completes a handshake with the next SNI name and closes.
func runHandshake(o *options) error {
	configs := make([]*tls.Config, len(o.names))
	for i, name := range o.names {
		configs[i] = clientConfig(o, name)
	}
	var next atomic.Uint64
	var total tally
	var wg sync.WaitGroup
	cpu0 := cpuSeconds()
	start := time.Now()
	deadline := start.Add(o.duration)
	for w := 0; w < o.workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			mine := &workerTally{maxSamples: o.maxSamples}
			defer total.merge(mine)
			d := dialer(o, w)
			for time.Now().Before(deadline) {
				i := next.Add(1) - 1
				if o.maxOps > 0 && i >= o.maxOps {
					return
				}
				t0 := time.Now()
				conn, err := dialTLS(d, o.addr, configs[i%uint64(len(configs))], o.opTimeout)
				if err != nil {
					mine.fail(err)
					continue
				}
				conn.Close()
				mine.ok(time.Since(t0))
			}
		}(w)
	}
	wg.Wait()
	emit(total.summary("handshake", time.Since(start), cpuSeconds()-cpu0))
	return nil
}

// runGet measures kept-alive HTTP/1.1 GETs over -c TLS connections. A
// connection the server closes is dialed again (counted in "connects").
func runGet(o *options) error {
	var next atomic.Uint64
	var total tally
	var wg sync.WaitGroup
	cpu0 := cpuSeconds()
	start := time.Now()
	deadline := start.Add(o.duration)
	for w := 0; w < o.workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			mine := &workerTally{maxSamples: o.maxSamples}
			defer total.merge(mine)
			getLoop(o, w, deadline, &next, mine)
		}(w)
	}
	wg.Wait()
	emit(total.summary("get", time.Since(start), cpuSeconds()-cpu0))
	return nil
}

func getLoop(o *options, w int, deadline time.Time, next *atomic.Uint64, mine *workerTally) {
	name := o.names[w%len(o.names)]
	host := o.host
	if host == "" {
		host = name
	}
	request := []byte(fmt.Sprintf(
		"GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: certgate-loadgen\r\nAccept: */*\r\n\r\n",
		o.path, host))
	cfg := clientConfig(o, name)
	d := dialer(o, w)
	var conn *tls.Conn
	var reader *bufio.Reader
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	for time.Now().Before(deadline) {
		if o.maxOps > 0 && next.Add(1) > o.maxOps {
			return
		}
		if conn == nil {
			c, err := dialTLS(d, o.addr, cfg, o.opTimeout)
			if err != nil {
				mine.fail(err)
				time.Sleep(time.Millisecond)
				continue
			}
			mine.connects++
			if err := c.SetDeadline(deadline.Add(o.opTimeout)); err != nil {
				mine.fail(err)
			}
			conn, reader = c, bufio.NewReaderSize(c, 16<<10)
		}
		t0 := time.Now()
		keep, err := getOnce(conn, reader, request)
		if err != nil {
			mine.fail(err)
			conn.Close()
			conn = nil
			continue
		}
		mine.ok(time.Since(t0))
		if !keep {
			conn.Close()
			conn = nil
		}
	}
}

// getOnce sends one request and reads its whole response; it reports whether
// the connection may be kept.
func getOnce(conn *tls.Conn, reader *bufio.Reader, request []byte) (bool, error) {
	if _, err := conn.Write(request); err != nil {
		return false, err
	}
	resp, err := http.ReadResponse(reader, nil)
	if err != nil {
		return false, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return false, err
	}
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("status %d", resp.StatusCode)
	}
	return !resp.Close, nil
}
