package main

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"net"
	"sort"
	"sync"
	"syscall"
	"time"
)

// clientConfig returns a TLS client configuration for one SNI name. There is no
// session cache, so every handshake is a full one.
func clientConfig(o *options, name string) *tls.Config {
	return &tls.Config{
		ServerName:         name,
		InsecureSkipVerify: true, //nolint:gosec // load only; the verify mode checks chains
		MinVersion:         tls.VersionTLS12,
		MaxVersion:         o.maxVersion,
	}
}

// dialer returns the dialer of worker w, bound to a spread source address.
func dialer(o *options, w int) *net.Dialer {
	d := &net.Dialer{Timeout: o.opTimeout}
	if o.srcIPs > 1 {
		d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+w%o.srcIPs))}
	}
	return d
}

// dialTLS opens a TCP connection and completes a TLS handshake on it.
func dialTLS(d *net.Dialer, addr string, cfg *tls.Config, timeout time.Duration) (*tls.Conn, error) {
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	conn := tls.Client(raw, cfg)
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		raw.Close()
		return nil, err
	}
	if err := conn.Handshake(); err != nil {
		raw.Close()
		return nil, err
	}
	return conn, nil
}

// leafFingerprint is the SHA-256 (hex) of the DER leaf the server presented.
func leafFingerprint(conn *tls.Conn) string {
	certs := conn.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return ""
	}
	sum := sha256.Sum256(certs[0].Raw)
	return hex.EncodeToString(sum[:])
}

// cpuSeconds is this process's user+system CPU time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

// tally collects the outcome of the operations of all workers.
type tally struct {
	mu         sync.Mutex
	ops        uint64
	errors     uint64
	connects   uint64
	bytes      uint64
	firstError string
	samples    []time.Duration
}

// workerTally is one worker's unsynchronised share, merged at its end.
type workerTally struct {
	ops, errors, connects, bytes uint64
	firstError                   string
	samples                      []time.Duration
	maxSamples                   int
}

func (w *workerTally) ok(d time.Duration) {
	w.ops++
	if len(w.samples) < w.maxSamples {
		w.samples = append(w.samples, d)
	}
}

func (w *workerTally) fail(err error) {
	w.errors++
	if w.firstError == "" {
		w.firstError = err.Error()
	}
}

func (t *tally) merge(w *workerTally) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ops += w.ops
	t.errors += w.errors
	t.connects += w.connects
	t.bytes += w.bytes
	if t.firstError == "" {
		t.firstError = w.firstError
	}
	t.samples = append(t.samples, w.samples...)
}

// summary renders the tally as the JSON object printed at the end of a run.
func (t *tally) summary(mode string, elapsed time.Duration, cpu float64) map[string]any {
	sec := elapsed.Seconds()
	out := map[string]any{
		"mode":         mode,
		"ops":          t.ops,
		"errors":       t.errors,
		"duration_s":   sec,
		"rate_per_s":   float64(t.ops) / sec,
		"client_cpu_s": cpu,
	}
	if t.connects > 0 {
		out["connects"] = t.connects
	}
	if t.bytes > 0 {
		out["bytes"] = t.bytes
	}
	if t.firstError != "" {
		out["first_error"] = t.firstError
	}
	if len(t.samples) > 0 {
		sort.Slice(t.samples, func(i, j int) bool { return t.samples[i] < t.samples[j] })
		pick := func(q float64) float64 {
			idx := int(q * float64(len(t.samples)-1))
			return float64(t.samples[idx]) / 1e6
		}
		out["lat_ms"] = map[string]float64{
			"p50": pick(0.50), "p90": pick(0.90), "p99": pick(0.99), "max": pick(1),
		}
	}
	return out
}
