package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

const uploadChunk = 64 << 10

// runUpload streams one POST body of -size-mb MB through the server and waits
// for the upstream's answer, which states how many bytes it received.
func runUpload(o *options) error {
	size := int64(o.sizeMB) * 1000 * 1000
	name := o.names[0]
	host := o.host
	if host == "" {
		host = name
	}
	cpu0 := cpuSeconds()
	start := time.Now()
	conn, err := dialTLS(dialer(o, 0), o.addr, clientConfig(o, name), o.opTimeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(start.Add(o.duration)); err != nil {
		return err
	}
	framing := fmt.Sprintf("Content-Length: %d", size)
	if o.chunked {
		framing = "Transfer-Encoding: chunked"
	}
	header := fmt.Sprintf("POST /upload HTTP/1.1\r\nHost: %s\r\nUser-Agent: certgate-loadgen\r\n"+
		"Content-Type: application/octet-stream\r\n%s\r\n\r\n", host, framing)

	type answer struct {
		resp *http.Response
		body string
		err  error
	}
	answers := make(chan answer, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			answers <- answer{err: err}
			return
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		answers <- answer{resp: resp, body: string(body), err: err}
	}()

	writer := bufio.NewWriterSize(conn, uploadChunk+64)
	if _, err := writer.WriteString(header); err != nil {
		return err
	}
	chunk := make([]byte, uploadChunk)
	for i := range chunk {
		chunk[i] = byte(i*7 + i>>8)
	}
	var sent int64
	for sent < size {
		n := int64(len(chunk))
		if size-sent < n {
			n = size - sent
		}
		if o.chunked {
			fmt.Fprintf(writer, "%x\r\n", n)
		}
		if _, err := writer.Write(chunk[:n]); err != nil {
			return fmt.Errorf("after %d bytes: %w", sent, err)
		}
		if o.chunked {
			writer.WriteString("\r\n")
		}
		sent += n
	}
	if o.chunked {
		writer.WriteString("0\r\n\r\n")
	}
	if err := writer.Flush(); err != nil {
		return fmt.Errorf("after %d bytes: %w", sent, err)
	}
	sentAt := time.Since(start)
	got := <-answers
	elapsed := time.Since(start)
	out := map[string]any{
		"mode":          "upload",
		"bytes":         sent,
		"chunked":       o.chunked,
		"duration_s":    elapsed.Seconds(),
		"send_done_s":   sentAt.Seconds(),
		"mb_per_s":      float64(sent) / 1e6 / elapsed.Seconds(),
		"client_cpu_s":  cpuSeconds() - cpu0,
		"upstream_said": strings.TrimSpace(got.body),
	}
	if got.err != nil {
		out["error"] = got.err.Error()
	} else {
		out["status"] = got.resp.StatusCode
		received := strings.TrimPrefix(strings.TrimSpace(got.body), "ok ")
		out["complete"] = got.resp.StatusCode == 200 && received == strconv.FormatInt(sent, 10)
	}
	emit(out)
	if got.err != nil {
		return got.err
	}
	return nil
}
