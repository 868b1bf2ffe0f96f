// Command loadgen is the load generator of the certgate comparison benchmark.
//
// It drives a TLS-terminating server on the loopback interface only, in one of
// these modes (each prints JSON lines on standard output and stops by itself
// after -d seconds or -n operations, whichever comes first):
//
//	handshake  full TLS handshakes, a new TCP connection each, no resumption,
//	           SNI spread round-robin over the names file, -c workers
//	get        kept-alive HTTP/1.1 GETs over TLS, -c connections
//	upload     one streaming POST of -size-mb MB (Content-Length or chunked)
//	newcert    poll handshakes for -name until the leaf's SHA-256 equals -expect-fp
//	verify     one handshake verified against -ca for -name (sanity check)
//	upstream   a tiny HTTP/1.1 upstream: GET answers "ok", POST bodies are read
//	           to the end and answered with their size; exits after -d seconds
package main

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// maxDuration bounds every mode, whatever -d says.
const maxDuration = 2 * time.Hour

type options struct {
	mode        string
	addr        string
	names       []string
	workers     int
	duration    time.Duration
	maxOps      uint64
	host        string
	path        string
	sizeMB      int
	chunked     bool
	expectFP    string
	caFile      string
	interval    time.Duration
	opTimeout   time.Duration
	maxVersion  uint16
	srcIPs      int
	listen      string
	maxSamples  int
	verifyNames bool
}

func main() {
	opts, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	var runErr error
	switch opts.mode {
	case "handshake":
		runErr = runHandshake(opts)
	case "get":
		runErr = runGet(opts)
	case "upload":
		runErr = runUpload(opts)
	case "newcert":
		runErr = runNewCert(opts)
	case "verify":
		runErr = runVerify(opts)
	case "upstream":
		runErr = runUpstream(opts)
	default:
		runErr = fmt.Errorf("unknown mode %q", opts.mode)
	}
	if runErr != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", runErr)
		os.Exit(1)
	}
}

func parseFlags() (*options, error) {
	o := &options{}
	var namesFile, name, maxTLS string
	var durationS, intervalMS, timeoutS float64
	var maxOps int64
	flag.StringVar(&o.mode, "mode", "", "handshake|get|upload|newcert|verify|upstream")
	flag.StringVar(&o.addr, "addr", "127.0.0.1:8443", "server address (loopback only)")
	flag.StringVar(&namesFile, "names", "", "file of SNI names, one per line")
	flag.StringVar(&name, "name", "", "a single SNI name (overrides -names)")
	flag.IntVar(&o.workers, "c", 32, "concurrent workers (handshake) or connections (get)")
	flag.Float64Var(&durationS, "d", 5, "duration in seconds (upper bound for every mode)")
	flag.Int64Var(&maxOps, "n", 0, "stop after this many operations (0: duration only)")
	flag.StringVar(&o.host, "host", "", "HTTP Host header (default: the connection's SNI name)")
	flag.StringVar(&o.path, "path", "/", "HTTP path for get")
	flag.IntVar(&o.sizeMB, "size-mb", 200, "upload size in MB (10^6 bytes)")
	flag.BoolVar(&o.chunked, "chunked", false, "upload with Transfer-Encoding: chunked")
	flag.StringVar(&o.expectFP, "expect-fp", "", "newcert: SHA-256 hex of the expected leaf")
	flag.StringVar(&o.caFile, "ca", "", "verify: PEM file of the trusted root")
	flag.Float64Var(&intervalMS, "interval-ms", 1, "newcert: pause between polls")
	flag.Float64Var(&timeoutS, "op-timeout", 10, "timeout of one operation in seconds")
	flag.StringVar(&maxTLS, "max-tls", "1.3", "highest TLS version offered: 1.2 or 1.3")
	flag.IntVar(&o.srcIPs, "src-ips", 1, "spread source addresses over 127.0.0.1..127.0.0.N")
	flag.StringVar(&o.listen, "listen", "127.0.0.1:18080", "upstream: listen address (loopback)")
	flag.IntVar(&o.maxSamples, "max-samples", 200000, "latency samples kept per worker")
	flag.Parse()

	o.duration = time.Duration(durationS * float64(time.Second))
	if o.duration <= 0 || o.duration > maxDuration {
		return nil, fmt.Errorf("-d must be in (0, %v]", maxDuration)
	}
	if maxOps < 0 {
		return nil, errors.New("-n must be >= 0")
	}
	o.maxOps = uint64(maxOps)
	o.interval = time.Duration(intervalMS * float64(time.Millisecond))
	o.opTimeout = time.Duration(timeoutS * float64(time.Second))
	if o.workers < 1 {
		return nil, errors.New("-c must be >= 1")
	}
	if o.srcIPs < 1 || o.srcIPs > 250 {
		return nil, errors.New("-src-ips must be in [1, 250]")
	}
	switch maxTLS {
	case "1.2":
		o.maxVersion = tls.VersionTLS12
	case "1.3":
		o.maxVersion = tls.VersionTLS13
	default:
		return nil, fmt.Errorf("-max-tls %q: want 1.2 or 1.3", maxTLS)
	}
	target := o.addr
	if o.mode == "upstream" {
		target = o.listen
	}
	if err := requireLoopback(target); err != nil {
		return nil, err
	}
	if name != "" {
		o.names = []string{name}
	} else if namesFile != "" {
		names, err := readNames(namesFile)
		if err != nil {
			return nil, err
		}
		o.names = names
	}
	if o.mode != "upstream" && len(o.names) == 0 {
		return nil, errors.New("give -names FILE or -name NAME")
	}
	return o, nil
}

// requireLoopback refuses any target that is not a loopback IP address.
func requireLoopback(hostport string) error {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return err
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("address %q is not a loopback IP; loadgen only talks to 127.0.0.0/8 or ::1", hostport)
	}
	return nil
}

func readNames(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			names = append(names, line)
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%s: no names", path)
	}
	return names, nil
}

// emit writes one JSON line on standard output.
func emit(v any) {
	data, err := json.Marshal(v)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen: json:", err)
		return
	}
	os.Stdout.Write(append(data, '\n'))
}
