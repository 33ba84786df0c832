package e2e

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/hotcluster/hotcluster/child"
)

func init() {
	roles.Register("tls-never-accept-gen1", roleTLSNeverAcceptGen1)
}

// roleTLSNeverAcceptGen1 is roleNeverAcceptGen1 in generation 1 (ready,
// never accepts); later generations serve hello over TLS with the
// certificate and key in TLS_CERT and TLS_KEY.
func roleTLSNeverAcceptGen1() int {
	if child.Generation() == 1 {
		return roleNeverAcceptGen1()
	}
	cert, err := tls.LoadX509KeyPair(os.Getenv("TLS_CERT"), os.Getenv("TLS_KEY"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ln, err := child.Listen("", "tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	tln := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}})
	srv := &http.Server{Handler: http.HandlerFunc(hello)}
	if err := child.ServeHTTP(context.Background(), srv, tln, child.Options{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// assertAnswered checks that each connection, whose request dialQueued
// sent while it waited in a queue, gets a whole answer from generation gen
// within a few seconds (not a reset, not a hang).
func assertAnswered(t *testing.T, cs []net.Conn, gen int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for i, c := range cs {
		c.SetReadDeadline(deadline)
		if got, err := readAnswer(c); err != nil || !servedBy(got, gen) {
			t.Errorf("connection %d: answer %q, %v; want one from gen %d", i, got, err, gen)
		}
	}
}

// readAnswer reads one HTTP response from c and returns its body.
func readAnswer(c io.Reader) (string, error) {
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func servedBy(body string, gen int) bool {
	sm := genRx.FindStringSubmatch(body)
	return sm != nil && sm[1] == strconv.Itoa(gen)
}

// Connections queued on a socket whose generation is gone (the quiet wait
// gave up: gen 1 never accepts) are relayed by the master to generation 2,
// request unread, and answered there; status counts them.
func TestStrandedQueueIsRelayed(t *testing.T) {
	t.Parallel()
	m := startOperated(t, "never-accept-gen1", "--workers", "1", "--quiet-timeout", "200ms", "--listen", "web=127.0.0.1:0")
	addr := m.listenAddr("web")
	m.waitLine(0, `NOT ACCEPTING`)
	m.waitReady(1)
	cs := dialQueued(t, addr, 16)
	m.signal(syscall.SIGHUP)
	m.waitLine(0, `gen 2: listen .*: old socket not quiet: accept queue: context deadline exceeded; moving on`)
	m.waitReady(2)
	m.waitLine(0, `gen 1 drained`)
	m.waitLine(0, `listen web: relayed 16 connections left in the accept queue of socket 0, which no generation serves any more, to the serving generation`)
	assertAnswered(t, cs, 2)
	if st := statusOf(t, m.env); st.Rescue == nil || st.Rescue.Queued != 16 || st.Rescue.Reset != 0 {
		t.Errorf("status rescue = %+v, want 16 queued, 0 reset", st.Rescue)
	}
	assertServedBy(t, "tcp", addr, 2)
}

// A TLS connection queued on a retired socket is relayed intact: its
// ClientHello, already in the queue, reaches generation 2's TLS server
// unread by the master, the handshake completes with the certificate the
// client trusts, and requests go on through the relay.
func TestStrandedTLSIsRelayedIntact(t *testing.T) {
	t.Parallel()
	certFile, keyFile, pool := testCert(t)
	m := startOperated(t, "tls-never-accept-gen1", "--workers", "1", "--quiet-timeout", "200ms",
		"--env", "TLS_CERT="+certFile, "--env", "TLS_KEY="+keyFile, "--listen", "web=127.0.0.1:0")
	addr := m.listenAddr("web")
	m.waitLine(0, `NOT ACCEPTING`)
	m.waitReady(1)
	const n = 4
	type result struct {
		i     int
		first string
		again string
		err   error
	}
	results := make(chan result, n)
	for i := 0; i < n; i++ {
		raw, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { raw.Close() })
		raw.SetDeadline(time.Now().Add(60 * time.Second))
		c := tls.Client(raw, &tls.Config{RootCAs: pool, ServerName: "hotcluster.test"})
		go func(i int) {
			r := result{i: i}
			defer func() { results <- r }()
			// The handshake blocks on the ClientHello, queued with the
			// connection, until a worker answers it.
			if r.err = c.Handshake(); r.err != nil {
				return
			}
			for _, s := range []*string{&r.first, &r.again} {
				if _, r.err = io.WriteString(c, "GET / HTTP/1.1\r\nHost: hotcluster.test\r\n\r\n"); r.err != nil {
					return
				}
				if *s, r.err = readAnswer(c); r.err != nil {
					return
				}
			}
		}(i)
	}
	m.signal(syscall.SIGHUP)
	m.waitReady(2)
	m.waitLine(0, fmt.Sprintf(`listen web: relayed %d connections left in the accept queue of socket 0, which no generation serves any more, to the serving generation`, n))
	for range n {
		r := <-results
		if r.err != nil || !servedBy(r.first, 2) || !servedBy(r.again, 2) {
			t.Errorf("TLS connection %d: answers %q, %q, %v; want two from gen 2", r.i, r.first, r.again, r.err)
		}
	}
	st := statusOf(t, m.env)
	if st.Rescue == nil || st.Rescue.Queued != n || st.Rescue.Relays != n {
		t.Errorf("status rescue = %+v, want %d queued and relayed now", st.Rescue, n)
	}
}

// testCert writes a self-signed certificate for hotcluster.test and its
// key to files, and returns them and a pool that trusts the certificate.
func testCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hotcluster.test"}, DNSNames: []string{"hotcluster.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}
