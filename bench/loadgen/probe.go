package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"
)

// runNewCert polls handshakes for one name until the presented leaf has the
// expected fingerprint. It prints {"event":"polling"} after its first
// handshake, then {"event":"match"} with the wall clock (Unix ns) of the first
// handshake that served the expected leaf, or {"event":"timeout"}.
func runNewCert(o *options) error {
	if len(o.expectFP) != 64 {
		return errors.New("-expect-fp wants a SHA-256 in hex")
	}
	name := o.names[0]
	cfg := clientConfig(o, name)
	d := dialer(o, 0)
	start := time.Now()
	deadline := start.Add(o.duration)
	var polls, failures uint64
	lastError := ""
	announced := false
	for time.Now().Before(deadline) && (o.maxOps == 0 || polls < o.maxOps) {
		polls++
		conn, err := dialTLS(d, o.addr, cfg, o.opTimeout)
		if err != nil {
			failures++
			lastError = err.Error()
			time.Sleep(o.interval)
			continue
		}
		fp := leafFingerprint(conn)
		seen := time.Now()
		conn.Close()
		if !announced {
			emit(map[string]any{"event": "polling", "fp": fp, "unix_ns": seen.UnixNano()})
			announced = true
		}
		if fp == o.expectFP {
			emit(map[string]any{
				"event": "match", "unix_ns": seen.UnixNano(), "polls": polls,
				"errors": failures, "last_error": lastError,
			})
			return nil
		}
		time.Sleep(o.interval)
	}
	emit(map[string]any{"event": "timeout", "polls": polls, "errors": failures, "last_error": lastError})
	return errors.New("the expected certificate was not served in time")
}

// runVerify makes one handshake that verifies the chain against -ca and the
// host name against the SNI name, and prints what the server presented.
func runVerify(o *options) error {
	pem, err := os.ReadFile(o.caFile)
	if err != nil {
		return fmt.Errorf("-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("%s: no certificate", o.caFile)
	}
	name := o.names[0]
	cfg := &tls.Config{ServerName: name, RootCAs: pool, MinVersion: tls.VersionTLS12, MaxVersion: o.maxVersion}
	conn, err := dialTLS(dialer(o, 0), o.addr, cfg, o.opTimeout)
	if err != nil {
		emit(map[string]any{"mode": "verify", "ok": false, "name": name, "error": err.Error()})
		return err
	}
	defer conn.Close()
	state := conn.ConnectionState()
	leaf := state.PeerCertificates[0]
	emit(map[string]any{
		"mode": "verify", "ok": true, "name": name,
		"subject":     leaf.Subject.String(),
		"dns_names":   leaf.DNSNames,
		"chain_len":   len(state.PeerCertificates),
		"fp":          leafFingerprint(conn),
		"tls":         versionName(state.Version),
		"cipher":      tls.CipherSuiteName(state.CipherSuite),
		"key_algo":    leaf.PublicKeyAlgorithm.String(),
		"verified_by": state.VerifiedChains[0][len(state.VerifiedChains[0])-1].Subject.String(),
	})
	return nil
}

// versionName names a TLS version (tls.VersionName needs Go 1.21).
func versionName(v uint16) string {
	switch v {
	case tls.VersionTLS13:
		return "TLSv1.3"
	case tls.VersionTLS12:
		return "TLSv1.2"
	default:
		return fmt.Sprintf("0x%04x", v)
	}
}
