package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// runUpstream serves the tiny upstream the proxies forward to: keep-alive
// HTTP/1.1, "ok" for a request without a body, and for a request with a body
// (read to its end, Content-Length or chunked) "ok N" with N its size. It
// exits by itself after -d seconds.
func runUpstream(o *options) error {
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	emit(map[string]any{"event": "listening", "addr": ln.Addr().String()})
	time.AfterFunc(o.duration, func() { os.Exit(0) })
	for {
		conn, err := ln.Accept()
		if err != nil {
			return err
		}
		go serveUpstream(conn)
	}
}

func serveUpstream(conn net.Conn) {
	defer conn.Close()
	reader := bufio.NewReaderSize(conn, 64<<10)
	writer := bufio.NewWriterSize(conn, 4<<10)
	for {
		req, err := http.ReadRequest(reader)
		if err != nil {
			return
		}
		if strings.EqualFold(req.Header.Get("Expect"), "100-continue") {
			writer.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
			if writer.Flush() != nil {
				return
			}
		}
		n, err := io.Copy(io.Discard, req.Body)
		req.Body.Close()
		if err != nil {
			return
		}
		body := "ok\n"
		if n > 0 || req.ContentLength > 0 || len(req.TransferEncoding) > 0 {
			body = fmt.Sprintf("ok %d\n", n)
		}
		fmt.Fprintf(writer, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s",
			len(body), body)
		if writer.Flush() != nil || req.Close {
			return
		}
	}
}
